"""Export KPIs where operators look: the `export_metrics` asset (hourly), three asset checks
and a plain-text table for the terminal (`export-pipeline metrics`). The maths and the
tables are `domain.kpis`.

The asset also carries storage usage (`ops.usage`: bytes and objects by kind, the top
users, the share of EXPORT_STORAGE_QUOTA_MB used), read in the same single listing pass
that gives `stored_bytes`; `storage_below_quota` warns from 80 % of the quota.

Metadata of `export_metrics` uses the same keys on every materialization (`METADATA_KEYS`)
so the Dagster UI can plot each one over time. A KPI that is undefined for the window
(a rate with nothing finished, a time with no export) is `null` rather than a made-up
number such as -1, which would draw a false dip in the plot.
"""

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
    Definitions,
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
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.kpis import (
    DEFAULT_WINDOW,
    EXPORT_1080P_1MIN_TARGET_S,
    SUCCESS_RATE_TARGET,
    compute_metrics,
    flat,
    render_markdown,
    render_text,
)
from export_pipeline.domain.values import human_bytes
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import Storage

ASSET_NAME = "export_metrics"
JOB_NAME = "export_metrics_job"
SCHEDULE_NAME = "export_metrics_schedule"
SUCCESS_CHECK_NAME = "success_rate_on_target"
SPEED_CHECK_NAME = "export_1080p_1min_p95_on_target"
QUOTA_CHECK_NAME = "storage_below_quota"


def _number(value: float | int | None) -> MetadataValue:
    if value is None:
        return MetadataValue.null()
    return MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)


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
    *flat(compute_metrics([], datetime(2000, 1, 1, tzinfo=UTC))),
    "kpis",
    *usage_metadata(StorageUsage()),
)


def metrics_table(
    store: RequestStore,
    storage: Storage | StorageResource | None,
    now: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> str:
    """The KPIs as a plain-text table for the terminal (`export-pipeline metrics`)."""
    now = utcnow() if now is None else as_utc(now)
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


@asset(
    name=ASSET_NAME,
    group_name="operations",
    description=(
        "Export KPIs over the requests created in the last 24 h: success "
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
    rows = store.created_since(now - DEFAULT_WINDOW)
    # One listing pass gives the total and the usage by kind and user.
    usage = storage_usage(storage.open(), store, storage.quota_bytes)
    m = compute_metrics(rows, now, usage.total_bytes, DEFAULT_WINDOW)
    context.log.info("\n" + render_text(m) + "\n" + usage.markdown())
    metadata: dict[str, Any] = {key: _number(value) for key, value in flat(m).items()}
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
            f"p95 of 1-minute 1080p exports {p95:.1f} s (target {EXPORT_1080P_1MIN_TARGET_S:.0f} s)"
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


def build_export_metrics(run_config: dict | None = None) -> Definitions:
    """`export_metrics` (asset, group "operations"), its three checks, `export_metrics_job`
    and the hourly `export_metrics_schedule` (running by default). `run_config`: the job's
    default run config (the JSON console logger)."""
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
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Export KPIs every hour.",
    )
    return Definitions(
        assets=[export_metrics],
        asset_checks=[success_rate_on_target, export_1080p_1min_p95_on_target, storage_below_quota],
        jobs=[job],
        schedules=[schedule],
    )
