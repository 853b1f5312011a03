"""Export KPIs where operators look: the `export_metrics` asset (hourly), three asset checks
and a plain-text table for the terminal (`export-pipeline metrics`).

The asset also carries storage usage (`ops.usage`: bytes and objects by kind, the top
users, the share of EXPORT_STORAGE_QUOTA_MB used), read in the same single listing pass
that gives `stored_bytes`; `storage_below_quota` warns from 80 % of the quota.

The product doc's targets: export success rate > 95 %, retry success rate > 80 %, a
1-minute 1080p export in under 90 s. `compute_metrics` is the maths, a pure function of
the request rows of a window (the last 24 h by `created_at`) and the bytes in storage;
the asset, the checks and `metrics_table` only feed it and present it.

Metadata of `export_metrics` uses the same keys on every materialization (`METADATA_KEYS`)
so the Dagster UI can plot each one over time. A KPI that is undefined for the window
(a rate with nothing finished, a time with no export) is `null` rather than a made-up
number such as -1, which would draw a false dip in the plot.
"""

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    asset_check,
    define_asset_job,
    in_process_executor,
)

from export_pipeline.defs.operations.usage import (
    KINDS,
    QUOTA_WARN_SHARE,
    StorageUsage,
    storage_usage,
)
from export_pipeline.defs.resources import AppDatabase, StorageResource
from export_pipeline.domain import status as st
from export_pipeline.domain.values import human_bytes
from export_pipeline.io.appdb.store import RequestStore, utcnow
from export_pipeline.io.storage import Storage

ASSET_NAME = "export_metrics"
JOB_NAME = "export_metrics_job"
SCHEDULE_NAME = "export_metrics_schedule"
SUCCESS_CHECK_NAME = "success_rate_on_target"
SPEED_CHECK_NAME = "export_1080p_1min_p95_on_target"
QUOTA_CHECK_NAME = "storage_below_quota"

DEFAULT_WINDOW = timedelta(hours=24)
SUCCESS_RATE_TARGET = 0.95
RETRY_SUCCESS_RATE_TARGET = 0.80
EXPORT_1080P_1MIN_TARGET_S = 90.0
# "A 1-minute export": what the product doc's speed KPI is about, with some slack.
ONE_MINUTE_S = (50.0, 70.0)

# Why requests end badly, from the messages the pipeline writes (README "Failure modes").
CAUSES = (
    "expired_clip_url",  # the CDN answered 401/403/404/410
    "invalid_clip_file",  # HTML, empty, corrupt, audio only, a playlist, over the size limit
    "invalid_request",  # refused by validation, a URL we may not fetch, impossible trims
    "clip_download",  # CDN 5xx/429, timeouts, cut-short bodies, after every retry
    "ffmpeg",  # encoding failed after every retry
    "storage",  # quota full, S3 refusing, missing intermediate objects
    "canceled",  # the app asked, or the run was canceled
    "other",  # a dead worker, an unknown error: read the run's logs
)

# First match wins; messages look like `<step> failed[ (after N attempts)]: <reason>`.
_CAUSE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (cause, re.compile(pattern, re.IGNORECASE))
    for cause, pattern in (
        ("canceled", r"canceled at the app's request|export run \S+ was canceled"),
        ("expired_clip_url", r"source url has expired or was removed"),
        ("invalid_request", r"invalid export request"),
        (
            "invalid_clip_file",
            r"\): the file |not a video file|could not be decoded|has no video stream"
            r"|has no duration|the limit per clip",
        ),
        (
            "invalid_request",
            r"trim_start .* (?:beyond|must be)|duration .* must be a number"
            r"|the export would be .* long|is not allowed \(only|not in the allowed cdn hosts"
            r"|private or reserved address|url has no host",
        ),
        (
            "storage",
            r"storage is full|an error occurred \(\w+\) when calling|s3uploadfailed"
            r"|failed to upload|no object at key|clip manifest is missing"
            r"|could not connect to the endpoint|accessdenied|nosuchbucket",
        ),
        ("ffmpeg", r"ffmpeg|ffprobe|^encoded_video\b"),
        (
            "clip_download",
            r"the cdn (?:answered|refused)|timed out|connection failed|cut short"
            r"|could not be resolved|redirect",
        ),
    )
)


def classify_failure(error_message: str | None, status: str | None = None) -> str:
    """One of `CAUSES` for a request that ended failed, canceled or rejected."""
    if status == st.CANCELED:
        return "canceled"
    for cause, pattern in _CAUSE_PATTERNS:
        if error_message and pattern.search(error_message):
            return cause
    return "invalid_request" if status == st.REJECTED else "other"


def as_utc(moment: datetime | None) -> datetime | None:
    """Aware UTC datetime; naive values (SQLite) are UTC already."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1), interpolating between closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _seconds(end: datetime | None, start: datetime | None) -> float | None:
    end, start = as_utc(end), as_utc(start)
    return None if end is None or start is None else (end - start).total_seconds()


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else None,
        "median": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def is_1080p_one_minute(row: dict[str, Any]) -> bool:
    duration = row.get("output_duration_s")
    return (
        row.get("resolution") == "1080p"
        and duration is not None
        and ONE_MINUTE_S[0] <= duration <= ONE_MINUTE_S[1]
    )


def compute_metrics(
    rows: Iterable[dict[str, Any]],
    now: datetime,
    stored_bytes: int | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[str, Any]:
    """The KPIs of the requests created in `[now - window, now]`.

    - success rate: complete / (complete + failed); canceled, rejected and expired requests
      are not outcomes of the pipeline and are left out. None when nothing finished.
    - retry success rate: the same, over finished requests with `retry_count > 0`.
    - export time: `completed_at - processing_started_at` of complete requests (of their
      latest run: a re-export restarts the clock), overall and for 1-minute 1080p exports
      (`resolution` 1080p, `output_duration_s` within `ONE_MINUTE_S`).
    - queue wait: `processing_started_at - created_at` of requests that started.
    - failures by cause: failed, canceled and rejected requests, by `classify_failure`.
    """
    now = as_utc(now)
    since = now - window
    rows = [r for r in rows if since <= (as_utc(r.get("created_at")) or now) <= now]
    by_status = {status: 0 for status in st.STATUSES}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1

    finished = [r for r in rows if r["status"] in (st.COMPLETE, st.FAILED)]
    retried = [r for r in finished if (r.get("retry_count") or 0) > 0]
    retried_complete = sum(1 for r in retried if r["status"] == st.COMPLETE)
    complete = [r for r in rows if r["status"] == st.COMPLETE]
    export_times = [
        s
        for r in complete
        if (s := _seconds(r.get("completed_at"), r.get("processing_started_at"))) is not None
    ]
    one_minute_times = [
        s
        for r in complete
        if is_1080p_one_minute(r)
        and (s := _seconds(r.get("completed_at"), r.get("processing_started_at"))) is not None
    ]
    queue_waits = [
        s
        for r in rows
        if (s := _seconds(r.get("processing_started_at"), r.get("created_at"))) is not None
    ]
    failures = {cause: 0 for cause in CAUSES}
    for row in rows:
        if row["status"] in (st.FAILED, st.CANCELED, st.REJECTED):
            failures[classify_failure(row.get("error_message"), row["status"])] += 1

    return {
        "now": now,
        "since": since,
        "window_hours": window.total_seconds() / 3600,
        "requests": len(rows),
        "by_status": by_status,
        "finished": len(finished),
        "success_rate": _rate(len(complete), len(finished)),
        "retried": len(retried),
        "retried_complete": retried_complete,
        "retry_success_rate": _rate(retried_complete, len(retried)),
        "export_time_s": _summary(export_times),
        "export_1080p_1min_s": _summary(one_minute_times),
        "queue_wait_s": _summary(queue_waits),
        "failures_by_cause": failures,
        "stored_bytes": stored_bytes,
    }


# ---- presentation


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(100 * rate, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _number(value: float | int | None) -> MetadataValue:
    if value is None:
        return MetadataValue.null()
    return MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)


def _flat(m: dict[str, Any]) -> dict[str, float | int | None]:
    """Every plotted number under a stable key (rates in percent, times in seconds)."""
    flat: dict[str, float | int | None] = {
        "window_hours": float(m["window_hours"]),
        "requests": m["requests"],
    }
    flat.update({f"status_{status}": m["by_status"].get(status, 0) for status in st.STATUSES})
    flat.update(
        {
            "finished": m["finished"],
            "success_rate_pct": _pct(m["success_rate"]),
            "retried_finished": m["retried"],
            "retry_success_rate_pct": _pct(m["retry_success_rate"]),
        }
    )
    for name, key in (
        ("export_time", "export_time_s"),
        ("export_1080p_1min", "export_1080p_1min_s"),
        ("queue_wait", "queue_wait_s"),
    ):
        summary = m[key]
        flat[f"{name}_count"] = summary["count"]
        for stat in ("mean", "median", "p95"):
            flat[f"{name}_{stat}_s"] = _round(summary[stat])
    flat.update({f"failures_{cause}": m["failures_by_cause"][cause] for cause in CAUSES})
    flat["stored_bytes"] = m["stored_bytes"]
    return flat


def usage_metadata(usage: StorageUsage) -> dict[str, Any]:
    """Storage usage (`ops.usage`) under stable keys: bytes and objects by kind, the quota
    and the share of it used (null without a quota), the top users."""
    metadata: dict[str, Any] = {}
    for kind in KINDS:
        metadata[f"storage_{kind}_bytes"] = MetadataValue.int(usage.bytes[kind])
        metadata[f"storage_{kind}_objects"] = MetadataValue.int(usage.objects[kind])
    share = usage.used_share
    metadata["storage_objects"] = MetadataValue.int(usage.total_objects)
    metadata["storage_quota_bytes"] = _number(usage.quota_bytes)
    metadata["storage_used_pct"] = _number(None if share is None else round(100 * share, 2))
    metadata["storage_top_users"] = MetadataValue.json(usage.top_users())
    metadata["storage_usage"] = MetadataValue.md(usage.markdown())
    return metadata


METADATA_KEYS: tuple[str, ...] = (
    *_flat(compute_metrics([], datetime(2000, 1, 1, tzinfo=UTC))),
    "kpis",
    *usage_metadata(StorageUsage()),
)


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _verdict(value: float | None, ok: bool) -> str:
    return "no data" if value is None else ("ok" if ok else "MISSED")


def kpi_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(KPI, value, target, verdict) rows shared by the markdown and the text table."""
    by_status = m["by_status"]
    in_flight = sum(by_status.get(s, 0) for s in (st.PENDING, *sorted(st.ACTIVE)))
    success, retry = m["success_rate"], m["retry_success_rate"]
    complete = by_status.get(st.COMPLETE, 0)
    times, one_min, waits = m["export_time_s"], m["export_1080p_1min_s"], m["queue_wait_s"]
    failures = ", ".join(f"{c} {n}" for c, n in m["failures_by_cause"].items() if n) or "none"
    stored = m["stored_bytes"]

    def pct(rate: float | None, part: int, whole: int) -> str:
        return "n/a" if rate is None else f"{100 * rate:.1f} % ({part}/{whole})"

    def spread(summary: dict[str, Any]) -> str:
        if not summary["count"]:
            return "n/a"
        return (
            f"median {_fmt_s(summary['median'])}, p95 {_fmt_s(summary['p95'])}, "
            f"mean {_fmt_s(summary['mean'])} (n={summary['count']})"
        )

    p95 = one_min["p95"]
    return [
        (
            "requests",
            f"{m['requests']} (complete {complete}, failed {by_status.get(st.FAILED, 0)}, "
            f"canceled {by_status.get(st.CANCELED, 0)}, in progress {in_flight})",
            "",
            "",
        ),
        (
            "success rate",
            pct(success, complete, m["finished"]),
            f">= {100 * SUCCESS_RATE_TARGET:.0f} %",
            _verdict(success, success is not None and success >= SUCCESS_RATE_TARGET),
        ),
        (
            "retry success rate",
            pct(retry, m["retried_complete"], m["retried"]),
            f">= {100 * RETRY_SUCCESS_RATE_TARGET:.0f} %",
            _verdict(retry, retry is not None and retry >= RETRY_SUCCESS_RATE_TARGET),
        ),
        ("export time", spread(times), "", ""),
        (
            "1-min 1080p export time",
            spread(one_min),
            f"p95 <= {EXPORT_1080P_1MIN_TARGET_S:.0f} s",
            _verdict(p95, p95 is not None and p95 <= EXPORT_1080P_1MIN_TARGET_S),
        ),
        ("queue wait", spread(waits), "", ""),
        ("failures by cause", failures, "", ""),
        ("stored", "n/a" if stored is None else human_bytes(stored), "", ""),
    ]


def _title(m: dict[str, Any]) -> str:
    return (
        f"Exports created in the last {m['window_hours']:g} h "
        f"(since {m['since']:%Y-%m-%d %H:%M} UTC)"
    )


def render_markdown(m: dict[str, Any]) -> str:
    lines = [_title(m), "", "| KPI | value | target | |", "|---|---|---|---|"]
    lines += [f"| {k} | {v} | {t} | {ok} |" for k, v, t, ok in kpi_rows(m)]
    return "\n".join(lines)


def render_text(m: dict[str, Any]) -> str:
    rows = [("KPI", "value", "target", ""), *kpi_rows(m)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [_title(m)]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def metrics_table(
    store: RequestStore,
    storage: Storage | StorageResource | None,
    now: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> str:
    """The KPIs as a plain-text table for the terminal (`export-pipeline metrics`)."""
    now = as_utc(now) or utcnow()
    if isinstance(storage, StorageResource):
        storage = storage.open()
    stored = storage.total_bytes() if storage is not None else None
    return render_text(compute_metrics(store.created_since(now - window), now, stored, window))


# ---- Dagster: asset, checks, job, schedule


def _latest_metadata(context: AssetCheckExecutionContext) -> dict[str, Any] | None:
    event = context.instance.get_latest_materialization_event(AssetKey(ASSET_NAME))
    if event is None or event.asset_materialization is None:
        return None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def build_export_metrics(
    window_hours: float = 24.0, cron_schedule: str = "0 * * * *", run_config: dict | None = None
) -> dict[str, list]:
    """`export_metrics` (asset, group "operations"), its three checks, `export_metrics_job`
    and the hourly `export_metrics_schedule` (running by default), as Definitions lists.
    `run_config`: the job's default run config (the JSON console logger)."""
    window = timedelta(hours=window_hours)

    @asset(
        name=ASSET_NAME,
        group_name="operations",
        description=(
            f"Export KPIs over the requests created in the last {window_hours:g} h: success "
            "and retry success rates, export and queue times, failures by cause; storage "
            "usage by kind and top users, against the quota."
        ),
        kinds={"python"},
    )
    def export_metrics(
        context: AssetExecutionContext, app_db: AppDatabase, storage: StorageResource
    ) -> MaterializeResult:
        now = utcnow()
        store = app_db.store()
        rows = store.created_since(now - window)
        # One listing pass gives the total and the usage by kind and user.
        usage = storage_usage(storage.open(), store, storage.quota_bytes)
        m = compute_metrics(rows, now, usage.total_bytes, window)
        context.log.info("\n" + render_text(m) + "\n" + usage.markdown())
        metadata: dict[str, Any] = {key: _number(value) for key, value in _flat(m).items()}
        metadata["kpis"] = MetadataValue.md(render_markdown(m))
        metadata.update(usage_metadata(usage))
        return MaterializeResult(metadata=metadata)

    @asset_check(
        asset=export_metrics,
        name=SUCCESS_CHECK_NAME,
        description=f"Export success rate >= {100 * SUCCESS_RATE_TARGET:.0f} % (product KPI).",
    )
    def success_rate_on_target(context: AssetCheckExecutionContext) -> AssetCheckResult:
        md = _latest_metadata(context) or {}
        rate = md.get("success_rate_pct")
        target = 100 * SUCCESS_RATE_TARGET
        metadata = {"success_rate_pct": rate, "target_pct": target, "finished": md.get("finished")}
        if rate is None:
            return AssetCheckResult(
                passed=True,
                severity=AssetCheckSeverity.WARN,
                description="no finished exports in the window: nothing to judge",
                metadata=metadata,
            )
        return AssetCheckResult(
            passed=rate >= target,
            severity=AssetCheckSeverity.WARN,
            description=f"success rate {rate:.1f} % (target {target:.0f} %)",
            metadata=metadata,
        )

    @asset_check(
        asset=export_metrics,
        name=SPEED_CHECK_NAME,
        description=(
            f"p95 time of 1-minute 1080p exports <= {EXPORT_1080P_1MIN_TARGET_S:.0f} s "
            "(product KPI: average under 90 s; the p95 is the stricter reading)."
        ),
    )
    def export_1080p_1min_p95_on_target(
        context: AssetCheckExecutionContext,
    ) -> AssetCheckResult:
        md = _latest_metadata(context) or {}
        p95 = md.get("export_1080p_1min_p95_s")
        metadata = {
            "export_1080p_1min_p95_s": p95,
            "target_s": EXPORT_1080P_1MIN_TARGET_S,
            "export_1080p_1min_count": md.get("export_1080p_1min_count"),
        }
        if p95 is None:
            return AssetCheckResult(
                passed=True,
                severity=AssetCheckSeverity.WARN,
                description="no 1-minute 1080p exports in the window: nothing to judge",
                metadata=metadata,
            )
        return AssetCheckResult(
            passed=p95 <= EXPORT_1080P_1MIN_TARGET_S,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"p95 of 1-minute 1080p exports {p95:.1f} s "
                f"(target {EXPORT_1080P_1MIN_TARGET_S:.0f} s)"
            ),
            metadata=metadata,
        )

    @asset_check(
        asset=export_metrics,
        name=QUOTA_CHECK_NAME,
        description=(
            f"Storage below {100 * QUOTA_WARN_SHARE:.0f} % of EXPORT_STORAGE_QUOTA_MB (publishing "
            "fails once it is full); passes with a note when no quota is set."
        ),
    )
    def storage_below_quota(context: AssetCheckExecutionContext) -> AssetCheckResult:
        md = _latest_metadata(context) or {}
        used, quota, pct = (
            md.get("stored_bytes"),
            md.get("storage_quota_bytes"),
            md.get("storage_used_pct"),
        )
        metadata = {
            "stored_bytes": used,
            "storage_quota_bytes": quota,
            "storage_used_pct": pct,
            "warn_at_pct": 100 * QUOTA_WARN_SHARE,
        }
        if not quota or used is None or pct is None:
            return AssetCheckResult(
                passed=True,
                severity=AssetCheckSeverity.WARN,
                description="no storage quota set (EXPORT_STORAGE_QUOTA_MB): nothing to check",
                metadata=metadata,
            )
        biggest = max(KINDS, key=lambda kind: md.get(f"storage_{kind}_bytes") or 0)
        return AssetCheckResult(
            passed=pct < 100 * QUOTA_WARN_SHARE,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"storage {pct:.1f} % full ({human_bytes(int(used))} of "
                f"{human_bytes(int(quota))}; warns from {100 * QUOTA_WARN_SHARE:.0f} %); "
                f"most of it: {biggest}"
            ),
            metadata=metadata,
        )

    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.assets(export_metrics),  # includes its checks
        executor_def=in_process_executor,
        config=run_config or None,
        description="Recompute the export KPIs and check them against the product targets.",
    )
    schedule = ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Export KPIs every hour.",
    )
    return {
        "assets": [export_metrics],
        "asset_checks": [
            success_rate_on_target,
            export_1080p_1min_p95_on_target,
            storage_below_quota,
        ],
        "jobs": [job],
        "schedules": [schedule],
    }
