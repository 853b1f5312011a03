"""Export KPIs: the maths on hand-built rows, then the `export_metrics` asset and its checks
on real app databases (SQLite and PostgreSQL), local storage and a real export."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DefaultScheduleStatus, Definitions
from sqlalchemy import update

from export_pipeline.definitions import build_definitions
from export_pipeline.defs.operations.metrics import (
    METADATA_KEYS,
    QUOTA_CHECK_NAME,
    SPEED_CHECK_NAME,
    SUCCESS_CHECK_NAME,
    build_export_metrics,
    metrics_table,
)
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import CAUSES, FailureCause, cause_of_row
from export_pipeline.domain.kpis import compute_metrics, percentile
from export_pipeline.io.appdb.schema import export_requests
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import LocalStorage
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def row(status: str, *, age_h: float = 1.0, export_s: float | None = 30.0, wait_s=5.0, **extra):
    """A request row as the store returns it; timestamps naive UTC, as SQLite gives them."""
    created = (NOW - timedelta(hours=age_h)).replace(tzinfo=None)
    started = created + timedelta(seconds=wait_s) if wait_s is not None else None
    completed = started + timedelta(seconds=export_s) if started and export_s is not None else None
    ran = status not in (st.PENDING, st.CANCELED, st.REJECTED)
    return {
        "id": extra.pop("id", 1),
        "status": status,
        "created_at": created,
        "queued_at": created,
        "processing_started_at": started,
        "completed_at": completed,
        "run_id": extra.pop("run_id", "run-1" if ran else None),
        "retry_count": extra.pop("retry_count", 0),
        "error_message": extra.pop("error_message", None),
        "error_cause": extra.pop("error_cause", None),
        "resolution": extra.pop("resolution", "720p"),
        "output_duration_s": extra.pop("output_duration_s", None),
        **extra,
    }


# ---- failure causes: the row's error_cause, written by whoever knew the cause


@pytest.mark.parametrize(
    "values, cause",
    [
        ({"status": st.FAILED, "error_cause": "ffmpeg", "run_id": "r"}, "ffmpeg"),
        ({"status": st.FAILED, "error_cause": "expired_clip_url"}, "expired_clip_url"),
        # rows written before the column existed: what the status says
        ({"status": st.CANCELED}, "canceled"),
        ({"status": st.REJECTED}, "rate_limited"),
        ({"status": st.FAILED}, "invalid_request"),  # refused at intake: no run
        ({"status": st.FAILED, "run_id": "r"}, "other"),
        ({"status": st.FAILED, "run_id": "r", "error_cause": "nonsense"}, "other"),
    ],
)
def test_the_cause_of_a_row_is_its_error_cause(values, cause):
    assert cause in CAUSES
    assert cause_of_row(values) == cause


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([], 0.5, None),
        ([7.0], 0.95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([3.0, 1.0, 2.0], 0.5, 2.0),  # unsorted input
        (list(range(1, 101)), 0.95, 95.05),
        ([10.0, 20.0], 0.95, 19.5),
    ],
)
def test_percentile_interpolates_between_ranks(values, q, expected):
    result = percentile(values, q)
    assert result == (None if expected is None else pytest.approx(expected))


# ---- the maths


def test_counts_rates_and_times_over_the_window():
    rows = [
        row(st.COMPLETE, id=1, export_s=20),
        row(st.COMPLETE, id=2, export_s=40, wait_s=15),
        row(st.COMPLETE, id=3, export_s=60, retry_count=1),
        row(st.FAILED, id=4, retry_count=2, error_cause="ffmpeg"),
        row(st.FAILED, id=5, run_id=None, error_cause="invalid_request"),  # refused at intake
        row(st.CANCELED, id=6, error_cause="canceled"),
        row(st.REJECTED, id=10, wait_s=None, error_cause="rate_limited"),
        row(st.PROCESSING, id=7, export_s=None),
        row(st.PENDING, id=8, wait_s=None),
        row(st.COMPLETE, id=9, age_h=25, export_s=999),  # outside the 24 h window
    ]
    m = compute_metrics(rows, NOW, stored_bytes=1234)
    assert m["requests"] == 9
    assert m["by_status"][st.COMPLETE] == 3 and m["by_status"][st.FAILED] == 2
    assert m["by_status"][st.CANCELED] == 1 and m["by_status"][st.EXPIRED] == 0
    assert m["by_status"][st.REJECTED] == 1
    assert sum(m["by_status"].values()) == m["requests"]  # every row has its place
    # of the requests that reached a run: the one refused at intake, the canceled and the
    # rejected ones are not outcomes of the pipeline
    assert m["finished"] == 4
    assert m["success_rate"] == pytest.approx(3 / 4)
    assert (m["retried"], m["retried_complete"]) == (2, 1)
    assert m["retry_success_rate"] == pytest.approx(0.5)
    assert m["export_time_s"]["count"] == 3
    assert m["export_time_s"]["median"] == pytest.approx(40)
    assert m["export_time_s"]["mean"] == pytest.approx(40)
    assert m["export_time_s"]["p95"] == pytest.approx(58)  # 40 + 0.9 * (60 - 40)
    # every row that started waited 5 s, except #2 (15 s); #8 never started
    assert m["queue_wait_s"]["count"] == 7
    assert m["queue_wait_s"]["median"] == pytest.approx(5)
    assert m["failures_by_cause"] == {
        **dict.fromkeys(CAUSES, 0),
        "ffmpeg": 1,
        "invalid_request": 1,
        "canceled": 1,
        "rate_limited": 1,
    }
    assert m["stored_bytes"] == 1234
    assert m["since"] == NOW - timedelta(hours=24)


def test_queue_wait_counts_from_when_the_latest_run_was_queued():
    """A re-export (retry, backfill) of a request created hours ago waited in the queue for
    seconds, not hours; a row without queued_at (older than the column) has no wait."""
    reexported = row(st.COMPLETE, id=1, age_h=20)
    started = (NOW - timedelta(minutes=2)).replace(tzinfo=None)
    reexported.update(
        queued_at=started - timedelta(seconds=3),
        processing_started_at=started,
        completed_at=started + timedelta(seconds=30),
    )
    unknown = row(st.COMPLETE, id=2)
    unknown["queued_at"] = None
    waits = compute_metrics([reexported, unknown], NOW)["queue_wait_s"]
    assert waits["count"] == 1 and waits["median"] == pytest.approx(3)


@pytest.mark.parametrize(
    "statuses, expected",
    [
        ([], None),  # nothing finished: no rate, not 0 %
        ([st.CANCELED, st.REJECTED, st.EXPIRED, st.PROCESSING], None),
        ([st.COMPLETE], 1.0),
        ([st.FAILED], 0.0),
        ([st.COMPLETE] * 19 + [st.FAILED], 0.95),
        ([st.COMPLETE, st.FAILED, st.CANCELED, st.EXPIRED, st.REJECTED], 0.5),
        ([st.COMPLETE, "failed-at-intake"], 1.0),  # never reached a run: not counted
    ],
)
def test_success_rate_counts_only_requests_that_reached_a_run(statuses, expected):
    rows = [
        row(st.FAILED, id=i, run_id=None) if s == "failed-at-intake" else row(s, id=i)
        for i, s in enumerate(statuses)
    ]
    rate = compute_metrics(rows, NOW)["success_rate"]
    assert rate == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "retried, expected",
    [
        ([], None),
        ([(st.COMPLETE, 1)], 1.0),
        ([(st.COMPLETE, 1), (st.COMPLETE, 3), (st.FAILED, 3), (st.COMPLETE, 2)], 0.75),
        ([(st.FAILED, 3), (st.CANCELED, 1)], 0.0),  # canceled is not finished
    ],
)
def test_retry_success_rate_is_over_finished_retried_requests(retried, expected):
    rows = [row(st.COMPLETE, id=100), row(st.FAILED, id=101)]  # never retried: ignored
    rows += [row(s, id=i, retry_count=n) for i, (s, n) in enumerate(retried)]
    rate = compute_metrics(rows, NOW)["retry_success_rate"]
    assert rate == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "resolution, duration_s, counted",
    [
        ("1080p", 60.0, True),
        ("1080p", 50.0, True),
        ("1080p", 70.0, True),
        ("1080p", 49.9, False),
        ("1080p", 70.1, False),
        ("720p", 60.0, False),
        ("4k", 60.0, False),
        ("1080p", None, False),
    ],
)
def test_one_minute_1080p_exports(resolution, duration_s, counted):
    rows = [row(st.COMPLETE, resolution=resolution, output_duration_s=duration_s, export_s=80)]
    summary = compute_metrics(rows, NOW)["export_1080p_1min_s"]
    assert summary["count"] == (1 if counted else 0)
    assert summary["p95"] == (80 if counted else None)


def test_naive_and_aware_timestamps_mix_and_the_window_is_configurable():
    aware = row(st.COMPLETE, id=1, export_s=10)
    for key in ("created_at", "processing_started_at", "completed_at"):
        aware[key] = aware[key].replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    rows = [aware, row(st.COMPLETE, id=2, export_s=30), row(st.FAILED, id=3, age_h=3)]
    m = compute_metrics(rows, NOW, window=timedelta(hours=2))
    assert m["requests"] == 2 and m["window_hours"] == 2
    assert m["export_time_s"]["median"] == pytest.approx(20)
    assert m["success_rate"] == 1.0


def test_no_rows_gives_no_rates_and_no_times():
    m = compute_metrics([], NOW)
    assert m["requests"] == 0 and m["finished"] == 0
    assert m["success_rate"] is None and m["retry_success_rate"] is None
    for key in ("export_time_s", "export_1080p_1min_s", "queue_wait_s"):
        assert m[key] == {"count": 0, "mean": None, "median": None, "p95": None}
    assert m["stored_bytes"] is None


# ---- the asset, its checks, the job and the schedule, on real databases


def set_row(store: RequestStore, request_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(export_requests).where(export_requests.c.id == request_id).values(**values)
        )


def add_finished(store, status, *, export_s=30.0, duration_s=60.0, resolution="1080p", **values):
    request_id = store.insert(
        project_id="p", user_id="u", resolution=resolution, quality="high",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )  # fmt: skip
    started = utcnow() - timedelta(minutes=10)
    set_row(
        store,
        request_id,
        status=status,
        processing_started_at=started,
        completed_at=started + timedelta(seconds=export_s),
        output_duration_s=duration_s if status == st.COMPLETE else None,
        **values,
    )
    return request_id


def metrics_defs(settings) -> Definitions:
    parts = build_export_metrics()
    return Definitions.merge(parts, Definitions(resources=settings.resources()))


def materialize_metrics(settings, instance):
    result = (
        metrics_defs(settings)
        .resolve_job_def("export_metrics_job")
        .execute_in_process(instance=instance)
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("export_metrics")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in materialization.metadata.items()}, checks


def test_metrics_asset_on_target_passes_both_checks(db_store, instance):
    store, settings = db_store
    for _ in range(19):
        add_finished(store, st.COMPLETE, export_s=30)
    add_finished(store, st.COMPLETE, export_s=40, retry_count=1)
    store.fail(add_finished(store, st.PENDING), st.CANCELED, "canceled", FailureCause.CANCELED)
    storage = LocalStorage(Path(settings.storage.local_root))
    storage.put_bytes("videos/exp-1.mp4", b"x" * 1000)

    metadata, checks = materialize_metrics(settings, instance)
    assert tuple(metadata) == METADATA_KEYS  # the same keys every time
    assert metadata["requests"] == 21 and metadata["status_complete"] == 20
    assert metadata["success_rate_pct"] == 100.0
    assert metadata["retry_success_rate_pct"] == 100.0
    assert metadata["export_1080p_1min_count"] == 20
    assert metadata["export_1080p_1min_p95_s"] == pytest.approx(30.5, abs=0.01)
    assert metadata["failures_canceled"] == 1
    assert metadata["stored_bytes"] == 1000
    assert (
        "| success rate (of exports that reached a run) | 100.0 % (20/20) | >= 95 % | ok |"
        in (metadata["kpis"])
    )

    assert set(checks) == {SUCCESS_CHECK_NAME, SPEED_CHECK_NAME, QUOTA_CHECK_NAME}
    assert all(c.passed for c in checks.values())
    assert checks[SUCCESS_CHECK_NAME].description == "success rate 100.0 % (target 95 %)"


def test_metrics_asset_off_target_warns(db_store, instance):
    store, settings = db_store
    add_finished(store, st.COMPLETE, export_s=120)  # a 1-minute 1080p export in 2 minutes
    add_finished(store, st.COMPLETE, export_s=20, resolution="720p")
    add_finished(
        store, st.FAILED, retry_count=3, run_id="run-x", error_cause="ffmpeg",
        error_message="encoded_video failed (after 4 attempts): ffmpeg exited with code 1",
    )  # fmt: skip

    metadata, checks = materialize_metrics(settings, instance)
    assert metadata["success_rate_pct"] == pytest.approx(66.67)
    assert metadata["retry_success_rate_pct"] == 0.0
    assert metadata["export_1080p_1min_p95_s"] == pytest.approx(120)
    assert metadata["failures_ffmpeg"] == 1
    success, speed = checks[SUCCESS_CHECK_NAME], checks[SPEED_CHECK_NAME]
    assert not success.passed and success.severity == AssetCheckSeverity.WARN
    assert success.metadata["success_rate_pct"].value == pytest.approx(66.67)
    assert not speed.passed and speed.severity == AssetCheckSeverity.WARN
    assert speed.metadata["export_1080p_1min_p95_s"].value == pytest.approx(120)


def test_metrics_asset_without_data_passes_and_says_so(settings, store, instance):
    metadata, checks = materialize_metrics(settings, instance)
    assert tuple(metadata) == METADATA_KEYS
    assert metadata["requests"] == 0
    assert metadata["success_rate_pct"] is None  # null, not a made-up number
    assert metadata["export_1080p_1min_p95_s"] is None
    assert metadata["stored_bytes"] == 0
    assert checks[SUCCESS_CHECK_NAME].passed
    assert "no finished exports" in checks[SUCCESS_CHECK_NAME].description
    assert checks[SPEED_CHECK_NAME].passed
    assert "no 1-minute 1080p exports" in checks[SPEED_CHECK_NAME].description
    assert checks[QUOTA_CHECK_NAME].passed
    assert "no storage quota set" in checks[QUOTA_CHECK_NAME].description


def test_metrics_after_a_real_export(settings, store, instance, cdn):
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success
    metadata, checks = materialize_metrics(settings, instance)
    storage = LocalStorage(Path(settings.storage.local_root))
    assert metadata["requests"] == 1 and metadata["status_complete"] == 1
    assert metadata["success_rate_pct"] == 100.0
    assert metadata["export_time_count"] == 1
    row = store.get(request_id)
    took = (row["completed_at"] - row["processing_started_at"]).total_seconds()
    assert metadata["export_time_median_s"] == pytest.approx(took, abs=0.01)
    assert 0 < metadata["export_time_median_s"] < 60
    assert metadata["queue_wait_count"] == 1 and metadata["queue_wait_median_s"] >= 0
    assert metadata["stored_bytes"] == storage.total_bytes() > row["output_bytes"]
    assert metadata["export_1080p_1min_count"] == 0  # a 720p, 2-second export
    assert all(c.passed for c in checks.values())


def test_metrics_table_for_the_terminal(db_store):
    store, settings = db_store
    add_finished(store, st.COMPLETE, export_s=30)
    add_finished(
        store, st.FAILED, run_id="run-y", error_cause="expired_clip_url",
        error_message="downloaded_clips failed: clip 1 (scene 1): its source URL has expired or was removed (HTTP 410); regenerate the clip and export again",
    )  # fmt: skip
    storage = LocalStorage(Path(settings.storage.local_root))
    storage.put_bytes("videos/exp-1.mp4", b"x" * 2048)

    table = metrics_table(store, storage)
    lines = table.splitlines()
    assert lines[0].startswith("Exports created in the last 24 h (since ")
    assert lines[1].split() == ["KPI", "value", "target"]
    text = "\n".join(" ".join(line.split()) for line in lines)
    assert "success rate (of exports that reached a run) 50.0 % (1/2) >= 95 % MISSED" in text
    assert "requests 2 (complete 1, failed 1)" in text
    assert "retry success rate n/a >= 80 % no data" in text
    assert (
        "1-min 1080p export time median 30.0 s, p95 30.0 s, mean 30.0 s (n=1) p95 <= 90 s ok"
        in text
    )
    assert "failures by cause expired_clip_url 1" in text
    assert "stored 2.0 KB" in text
    # A window that ended before the rows were created shows nothing.
    empty = metrics_table(store, None, now=utcnow() - timedelta(days=2))
    assert "requests 0 (none)" in " ".join(empty.split())
    assert "stored n/a" in " ".join(empty.split())


# ---- wiring


def test_schedules_target_their_jobs_and_run_by_default(settings):
    defs = build_definitions(settings)  # wires both factories in
    Definitions.validate_loadable(defs)
    expected = {
        "export_metrics_schedule": ("export_metrics_job", "0 * * * *"),
        "retention_schedule": ("retention_job", "30 3 * * *"),
        "temp_sweep_schedule": ("temp_sweep_job", "45 3 * * *"),
    }
    for name, (job_name, cron) in expected.items():
        schedule = defs.resolve_schedule_def(name)
        assert schedule.job_name == job_name and schedule.cron_schedule == cron
        assert schedule.default_status == DefaultScheduleStatus.RUNNING
        assert schedule.execution_timezone == "UTC"
        defs.resolve_job_def(job_name)  # the target exists
    metrics_job = defs.resolve_job_def("export_metrics_job")
    assert {k.name for k in metrics_job.asset_layer.asset_graph.asset_check_keys} >= {
        SUCCESS_CHECK_NAME,
        SPEED_CHECK_NAME,
    }
    (spec,) = defs.resolve_assets_def("export_metrics").specs
    assert spec.group_name == "operations"
