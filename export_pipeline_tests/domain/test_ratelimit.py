"""Per-user daily export limit: the pure rule, the store query, and the intake sensor."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from dagster import SensorResult, build_sensor_context
from sqlalchemy import text

from export_pipeline.definitions import build_definitions
from export_pipeline.defs.intake.sensors import build_export_requests_sensor
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, iso_rounded_up
from export_pipeline.domain.failures import FailureCause
from export_pipeline.domain.ratelimit import (
    COUNTED_STATUSES,
    RateLimiter,
    counts,
    history_from_rows,
    next_allowed_at,
    rejection_message,
)
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.defs.intake.test_sensors import insert

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def ago(*hours: float) -> list[datetime]:
    return [NOW - h * H for h in hours]


@pytest.mark.parametrize(
    ("counted", "limit", "expected"),
    [
        pytest.param([], 5, None, id="nothing-yet"),
        pytest.param(ago(1, 2, 3, 4), 5, None, id="under-the-limit"),
        pytest.param(ago(1, 2, 3, 4, 23.5), 5, NOW + 0.5 * H, id="at-the-limit"),
        pytest.param(ago(23.5, 1, 4, 2, 3), 5, NOW + 0.5 * H, id="any-order"),
        pytest.param(ago(1, 2, 3, 4, 25, 30), 5, None, id="older-ones-left-the-window"),
        pytest.param(ago(1, 2, 3, 4, 5, 6, 20), 5, NOW + 19 * H, id="over-after-lowering"),
        pytest.param(ago(1, 2, 3, 4, 5, 6, 7), 0, None, id="0-means-off"),
        pytest.param(ago(10), 1, NOW + 14 * H, id="one-a-day"),
        pytest.param([NOW + 0.01 * H], 1, NOW + 24.01 * H, id="db-clock-slightly-ahead"),
        pytest.param(
            [t.replace(tzinfo=None) for t in ago(1, 2, 3, 4, 6)], 5, NOW + 18 * H, id="naive-utc"
        ),
    ],
)
def test_next_allowed_at(counted, limit, expected):
    assert next_allowed_at(counted, NOW, limit) == expected


@pytest.mark.parametrize(
    ("status", "run_id", "counted"),
    [
        (st.QUEUED, None, True),
        (st.PROCESSING, "r", True),
        (st.RETRYING, "r", True),
        (st.COMPLETE, "r", True),
        (st.EXPIRED, "r", True),
        (st.FAILED, "r", True),  # the run used the machines
        (st.FAILED, None, False),  # invalid request: never ran
        (st.CANCELED, "r", False),
        (st.REJECTED, None, False),
        (st.PENDING, None, False),
    ],
)
def test_what_counts(status, run_id, counted):
    assert counts({"status": status, "run_id": run_id}) is counted
    assert (status in COUNTED_STATUSES) is (counted or (status, run_id) == (st.FAILED, None))


@pytest.mark.parametrize(
    ("moment", "text_"),
    [
        (datetime(2026, 11, 24, 10, 32, tzinfo=UTC), "2026-11-24T10:32:00Z"),
        (datetime(2026, 11, 24, 10, 31, 59, 200_000, tzinfo=UTC), "2026-11-24T10:32:00Z"),
        (datetime(2026, 11, 24, 10, 32), "2026-11-24T10:32:00Z"),  # naive = UTC
        (datetime(2026, 11, 24, 12, 32, tzinfo=timezone(H)), "2026-11-24T11:32:00Z"),
    ],
)
def test_iso_rounded_up_rounds_up_to_the_second(moment, text_):
    assert iso_rounded_up(moment) == text_


def test_rejection_message_reads_as_the_product_doc():
    message = rejection_message("user-9", 5, datetime(2026, 11, 24, 10, 32, tzinfo=UTC))
    assert message == (
        "rate limit: 5 exports per 24 h per user; user-9 can export again at 2026-11-24T10:32:00Z"
    )
    assert "1 export per 24 h" in rejection_message("u", 1, NOW)


def test_rows_of_one_tick_count_against_each_other():
    limiter = RateLimiter(3, NOW, {"a": ago(20)})
    assert limiter.admit("a", NOW) is None
    assert limiter.admit("b", NOW) is None
    assert limiter.admit("a", NOW) is None
    third = limiter.admit("a", NOW)  # 20 h ago + two admitted now
    assert third is not None and third.endswith("a can export again at 2026-11-23T16:00:00Z")
    assert limiter.admit("a", NOW) == third  # a refusal does not count
    assert RateLimiter(0, NOW, {"a": ago(1, 2, 3)}).admit("a") is None


def test_history_only_keeps_what_counts():
    rows = [
        {"user_id": "a", "status": st.COMPLETE, "run_id": "r", "created_at": NOW},
        {"user_id": "a", "status": st.FAILED, "run_id": None, "created_at": NOW},
        {"user_id": "a", "status": st.CANCELED, "run_id": "r", "created_at": NOW},
        {
            "user_id": "b",
            "status": st.QUEUED,
            "run_id": None,
            "created_at": NOW.replace(tzinfo=None),
        },
    ]
    assert history_from_rows(rows) == {"a": [NOW], "b": [NOW]}


# ---- the store query, on SQLite and PostgreSQL


def test_recent_exports_query(db_url):
    store = RequestStore.from_url(db_url)
    store.create_schema()
    ids = [insert(store, user) for user in ("u1", "u1", "u2", "u3")]
    set_created(store, ids[0], datetime.now(UTC) - 25 * H)  # out of the window
    store.transition(ids[1], st.CANCELED)
    since = datetime.now(UTC) - 24 * H
    rows = store.recent_exports({"u1", "u2"}, since, statuses=[st.PENDING])
    assert [r["id"] for r in rows] == [ids[2]]
    rows = store.recent_exports({"u1", "u2"}, since, [st.PENDING, st.CANCELED], [ids[2]])
    assert [(r["id"], r["user_id"], r["status"]) for r in rows] == [(ids[1], "u1", st.CANCELED)]
    assert as_utc(rows[0]["created_at"]) > since
    assert store.recent_exports(set(), since, [st.PENDING]) == []


# ---- the intake sensor


def set_created(store, request_id: int, created_at: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE export_requests SET created_at = :t WHERE id = :i"),
            {"t": created_at, "i": request_id},
        )


def tick(defs, instance, limit: int, cursor=None):
    sensor = build_export_requests_sensor(batch_size=50, daily_limit=limit)
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources)
    )
    return sensor(context)


def test_sensor_rejects_the_sixth_export_of_a_user_and_queues_the_others(settings, store, instance):
    defs = build_definitions(settings)
    mine = [insert(store, "user-9") for _ in range(3)]
    other = insert(store, "user-2")
    mine += [insert(store, "user-9") for _ in range(3)]
    first_at = as_utc(store.get(mine[0])["created_at"])

    result = tick(defs, instance, limit=5)
    assert isinstance(result, SensorResult)
    queued = sorted(mine[:5] + [other])
    assert [r.partition_key for r in result.run_requests] == [f"exp-{i}" for i in queued]
    assert result.cursor == str(mine[-1])
    assert all(store.get(i)["status"] == st.QUEUED for i in queued)
    sixth = store.get(mine[5])
    assert sixth["status"] == st.REJECTED and sixth["completed_at"] is not None
    assert sixth["error_message"] == rejection_message("user-9", 5, first_at + 24 * H)
    assert sixth["error_message"].startswith("rate limit: 5 exports per 24 h per user; user-9 ")

    # Next tick: the queued ones in the database count; user-2 is still far from the limit.
    late, other2 = insert(store, "user-9"), insert(store, "user-2")
    again = tick(defs, instance, limit=5, cursor=result.cursor)
    assert [r.partition_key for r in again.run_requests] == [f"exp-{other2}"]
    assert store.get(late)["status"] == st.REJECTED

    # Canceled exports and refusals do not count: cancel one, and the user may export again.
    store.request_cancel(mine[0])
    store.transition(mine[0], st.CANCELED)
    allowed = insert(store, "user-9")
    third = tick(defs, instance, limit=5, cursor=again.cursor)
    assert [r.partition_key for r in third.run_requests] == [f"exp-{allowed}"]


def test_invalid_requests_and_old_exports_do_not_count(settings, store, instance):
    defs = build_definitions(settings)
    invalid = [insert(store, "u", resolution="8k") for _ in range(2)]
    assert not tick(defs, instance, limit=2).run_requests
    assert {store.get(i)["status"] for i in invalid} == {st.FAILED}  # never ran
    old = insert(store, "u")
    store.transition(old, st.QUEUED)
    set_created(store, old, datetime.now(UTC) - 25 * H)
    recent = insert(store, "u")
    store.transition(recent, st.QUEUED)
    store.transition(recent, st.PROCESSING, run_id="r1")
    store.fail(recent, st.FAILED, "encoded_video failed", FailureCause.FFMPEG)  # ran: counts
    new = [insert(store, "u"), insert(store, "u")]
    result = tick(defs, instance, limit=2, cursor=str(recent))
    assert [r.partition_key for r in result.run_requests] == [f"exp-{new[0]}"]
    assert store.get(new[1])["status"] == st.REJECTED


def test_a_replayed_tick_keeps_queued_rows_and_counts_them(settings, store, instance):
    """A tick whose cursor was lost sees its queued rows again: they stay admitted."""
    defs = build_definitions(settings)
    ids = [insert(store, "u") for _ in range(2)]
    first = tick(defs, instance, limit=2)
    extra = insert(store, "u")
    replay = tick(defs, instance, limit=2, cursor=None)
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]
    assert [store.get(i)["status"] for i in ids] == [st.QUEUED, st.QUEUED]
    assert store.get(extra)["status"] == st.REJECTED


def test_no_limit_by_default(settings, store, instance):
    defs = build_definitions(settings)
    ids = [insert(store, "u") for _ in range(7)]
    result = tick(defs, instance, limit=0)
    assert [r.partition_key for r in result.run_requests] == [f"exp-{i}" for i in ids]


def test_an_operator_retry_overrides_the_limit(settings, store, instance):
    defs = build_definitions(settings)
    ids = [insert(store, "u") for _ in range(3)]
    first = tick(defs, instance, limit=2)
    assert store.get(ids[2])["status"] == st.REJECTED
    assert store.requeue(ids[2])  # `export-pipeline retry`
    again = tick(defs, instance, limit=2, cursor=first.cursor)
    assert [r.partition_key for r in again.run_requests] == [f"exp-{ids[2]}"]
    assert store.get(ids[2])["status"] == st.QUEUED
    late = insert(store, "u")  # the retried export counts: still over the limit
    third = tick(defs, instance, limit=2, cursor=again.cursor)
    assert not third.run_requests and store.get(late)["status"] == st.REJECTED
