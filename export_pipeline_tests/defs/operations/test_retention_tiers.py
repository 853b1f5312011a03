"""Retention by plan (issue 14): each request's own `retention_days`, `expires_at` on the
completed row, and the sweep honouring both, on SQLite and PostgreSQL with a real Dagster
instance and local storage. Time is moved by passing `now` to the sweep."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from export_pipeline.cli.local_runner import evaluate_intake
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.operations.sweep import deadline, sweep_expired
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.request import parse_request, retention_days_of
from export_pipeline.io.appdb.schema import export_requests
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import LocalStorage
from export_pipeline_tests.conftest import clip

PARTITIONS = "export_requests"
URL = "https://cdn.example/a.mp4"


def set_row(store: RequestStore, request_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(export_requests).where(export_requests.c.id == request_id).values(**values)
        )


def finished(store, instance, storage, status, *, days=None, expires=True, at=None) -> int:
    """A row that finished at `at` with `status` and a plan of `days` (None: the default),
    with its objects in storage and its partition, as the pipeline leaves them; a complete
    row gets `expires_at` the way `published_video` writes it (unless `expires` is False:
    a row completed before the column existed)."""
    request_id = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low",
        clips=[clip(URL, 1)], retention_days=days,
    )  # fmt: skip
    at = at or utcnow()
    values = {"status": status, "completed_at": at}
    if status == st.COMPLETE:
        values["video_url"] = f"file:///videos/exp-{request_id}.mp4"
        if expires:
            values["expires_at"] = at + timedelta(days=days or 7)
    set_row(store, request_id, **values)
    storage.put_bytes(f"videos/exp-{request_id}.mp4", b"v" * 10)
    storage.put_json(f"work/exp-{request_id}/clips.json", {"clips": []})
    instance.add_dynamic_partitions(PARTITIONS, [f"exp-{request_id}"])
    return request_id


def kept(storage: LocalStorage, ids) -> set[int]:
    return {i for i in ids if storage.exists(f"videos/exp-{i}.mp4")}


def test_each_export_is_kept_for_its_own_plan(db_store, instance):
    store, settings = db_store
    storage = LocalStorage(Path(settings.storage.local_root))
    t0 = utcnow()
    week = finished(store, instance, storage, st.COMPLETE, days=7, at=t0)
    month = finished(store, instance, storage, st.COMPLETE, days=30, at=t0)
    default = finished(store, instance, storage, st.COMPLETE, at=t0)  # NULL: 7 days
    legacy = finished(store, instance, storage, st.COMPLETE, days=30, expires=False, at=t0)
    failed_month = finished(store, instance, storage, st.FAILED, days=30, at=t0)
    failed = finished(store, instance, storage, st.FAILED, at=t0)
    ids = [week, month, default, legacy, failed_month, failed]

    def sweep(after: timedelta) -> list[int]:
        return sweep_expired(store, storage, instance, 7, now=t0 + after).requests

    assert sweep(timedelta(days=6, hours=23)) == []
    assert kept(storage, ids) == set(ids)
    # The 7-day sweep: the week and default plans go, the 30-day ones survive.
    assert sweep(timedelta(days=7, minutes=1)) == [week, default, failed]
    assert kept(storage, ids) == {month, legacy, failed_month}
    for request_id in (week, default):
        row = store.get(request_id)
        assert row["status"] == st.EXPIRED and row["video_url"] is None
    assert store.get(month)["status"] == st.COMPLETE and store.get(month)["video_url"]
    assert sweep(timedelta(days=29, hours=23)) == []
    # ... and go after their 30 days; a row without expires_at by its retention_days.
    assert sweep(timedelta(days=30, minutes=1)) == [month, legacy, failed_month]
    assert kept(storage, ids) == set()
    assert store.get(month)["status"] == st.EXPIRED
    assert store.get(failed_month)["status"] == st.FAILED
    assert instance.get_dynamic_partitions(PARTITIONS) == []


def test_a_kept_plan_keeps_the_clips_it_shares(db_store, instance):
    """A clip used by a 7-day export and a 30-day one stays until the 30-day one goes."""
    store, settings = db_store
    storage = LocalStorage(Path(settings.storage.local_root))
    clip_key = "clips/sha256/" + "ab" * 32 + ".mp4"
    storage.put_bytes(clip_key, b"c" * 5)
    t0 = utcnow()
    week = finished(store, instance, storage, st.COMPLETE, days=7, at=t0)
    month = finished(store, instance, storage, st.COMPLETE, days=30, at=t0)
    for request_id in (week, month):
        storage.put_json(f"work/exp-{request_id}/clips.json", {"clips": [{"key": clip_key}]})
    report = sweep_expired(store, storage, instance, 7, now=t0 + timedelta(days=8))
    assert report.requests == [week] and report.clips_kept == 1
    assert storage.exists(clip_key)
    report = sweep_expired(store, storage, instance, 7, now=t0 + timedelta(days=31))
    assert report.requests == [month] and report.deleted["clips"] == 1
    assert not storage.exists(clip_key)


@pytest.mark.e2e
def test_expires_at_is_set_when_the_export_completes(settings, store, instance, cdn):
    """Through a real export: completed_at + the request's retention_days, or the default
    (EXPORT_RETENTION_DAYS); a re-export completes with a new one and no reminder yet."""
    from export_pipeline_tests.e2e.test_pipeline import export

    settings = settings.replace(retention={"days": 5})
    month, result, defs = export(
        settings, store, instance, [clip(cdn.url("classic.mp4"), 1, duration=0.5)],
        retention_days=30,
    )  # fmt: skip
    default, result_2, _ = export(
        settings, store, instance, [clip(cdn.url("classic.mp4"), 1, duration=0.5)]
    )
    assert result.success and result_2.success
    for request_id, days in ((month, 30), (default, 5)):
        found = store.get(request_id)
        assert found["status"] == st.COMPLETE and found["reminded_at"] is None
        assert as_utc(found["expires_at"]) == as_utc(found["completed_at"]) + timedelta(days=days)
    (materialization,) = result.asset_materializations_for_node("published_video")
    assert materialization.metadata["retention_days"].value == 30

    set_row(store, month, reminded_at=utcnow())
    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance, partition_key=f"exp-{month}"
    )
    assert again.success
    found = store.get(month)
    assert found["reminded_at"] is None
    assert as_utc(found["expires_at"]) == as_utc(found["completed_at"]) + timedelta(days=30)


def test_deadline_of_a_row():
    t0 = utcnow()
    assert deadline({"status": st.COMPLETE, "expires_at": t0, "completed_at": t0}) == t0
    assert deadline({"status": st.FAILED, "completed_at": t0, "retention_days": 3}) == (
        t0 + timedelta(days=3)
    )
    # an invalid value (the row was failed at intake) falls back to the default
    assert deadline({"status": st.FAILED, "completed_at": t0, "retention_days": "x"}, 5) == (
        t0 + timedelta(days=5)
    )
    assert deadline({"status": st.CANCELED}) is None
    assert retention_days_of({"retention_days": 30.0}, 7) == 30


def row(**fields) -> dict:
    return {
        "id": 1, "project_id": "p", "user_id": "u", "resolution": "720p",
        "aspect_ratio": "16:9", "quality": "low", "clips": [clip(URL, 1)], **fields,
    }  # fmt: skip


@pytest.mark.parametrize("value", [1, 7, 30, 365, 30.0])
def test_valid_retention_days(value):
    assert parse_request(row(retention_days=value)).retention_days == int(value)
    assert parse_request(row()).retention_days is None


@pytest.mark.parametrize("value", [0, -3, 366, 10**12, 2.5, "30 days", "", True, float("nan")])
def test_invalid_retention_days_are_refused_with_a_reason(value):
    with pytest.raises(InvalidRequest) as error:
        parse_request(row(retention_days=value))
    message = str(error.value)
    assert "retention_days must be a whole number of days from 1 to 365" in message
    assert "or NULL for the default, got " in message


def test_bad_retention_days_fail_the_row_at_intake(db_store, instance):
    """Through the sensor, as the app writes them (plain SQL): the row says why."""
    store, settings = db_store
    sqlite = store.engine.dialect.name == "sqlite"
    values = ["0", "-3", "100000"] + (["'thirty'", "7.5"] if sqlite else [])
    ids = {}
    for value in values:
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO export_requests (project_id, user_id, resolution, quality, "
                    f"clips, retention_days) VALUES ('p', 'u', '720p', 'low', :clips, {value})"
                ),
                {"clips": f'[{{"url": "{URL}", "scene_number": 1}}]'},
            )
            ids[value] = conn.execute(text("SELECT max(id) FROM export_requests")).scalar_one()
    good = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low", clips=[clip(URL, 1)],
        retention_days=30,
    )  # fmt: skip
    defs = build_definitions(settings.replace(intake={"daily_limit": 0}))
    evaluate_intake(instance, defs, cursor=None)
    for value, request_id in ids.items():
        found = store.get(request_id)
        assert found["status"] == st.FAILED, value
        shown = {"'thirty'": "'thirty'"}.get(value, value)
        assert found["error_message"] == (
            "invalid export request: retention_days must be a whole number of days from 1 to "
            "365 (how long the finished video is kept, from the user's plan, e.g. 7 or 30), "
            f"or NULL for the default, got {shown}"
        )
    assert store.get(good)["status"] == st.QUEUED
    assert store.get(good)["retention_days"] == 30


def test_expiring_claim_and_release(db_store, instance):
    store, settings = db_store
    storage = LocalStorage(Path(settings.storage.local_root))
    t0 = utcnow()
    soon = finished(store, instance, storage, st.COMPLETE, days=7, at=t0)
    later = finished(store, instance, storage, st.COMPLETE, days=30, at=t0)
    window = (t0 + timedelta(days=5), t0 + timedelta(days=7))
    assert [r["id"] for r in store.expiring(*window)] == [soon]
    expires_at = store.get(soon)["expires_at"]
    assert as_utc(expires_at) == t0 + timedelta(days=7)
    assert store.claim_reminder(soon, expires_at, window[0])
    assert not store.claim_reminder(soon, expires_at, window[0])  # once
    assert store.expiring(*window) == []
    assert store.release_reminder(soon, window[0])
    assert not store.claim_reminder(soon, t0, window[0])  # another completion's
    assert [r["id"] for r in store.expiring(*window)] == [soon]
    assert [r["id"] for r in store.expiring(t0 + timedelta(days=28), t0 + timedelta(days=30))] == [
        later
    ]


def test_reexport_keeps_the_plan(settings, store, monkeypatch, capsys):
    from export_pipeline.cli.main import main

    monkeypatch.setenv("EXPORT_PIPELINE_HOME", str(settings.home))
    monkeypatch.delenv("EXPORT_DB_URL", raising=False)
    old = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low", clips=[clip(URL, 1)],
        retention_days=30,
    )  # fmt: skip
    assert main(["reexport", str(old)]) == 0
    new = int(capsys.readouterr().out.strip())
    assert store.get(new)["retention_days"] == 30


def test_settings_read_the_retention_variables():
    from export_pipeline.defs.settings import Settings

    defaults = Settings.from_env({})
    assert (defaults.retention.days, defaults.webhook.reminder_days) == (7, 2.0)
    settings = Settings.from_env(
        {"EXPORT_RETENTION_DAYS": "30", "EXPORT_EXPIRY_REMINDER_DAYS": "0.5"}
    )
    assert (settings.retention.days, settings.webhook.reminder_days) == (30, 0.5)
