"""Retention jobs: `retention_job` (daily `retention_schedule`, 03:30 UTC) deletes what
requests whose time is up left behind (`sweep.sweep_expired`), `temp_sweep_job` (daily,
03:45 UTC) removes scratch directories that outlived their step (`io.scratch`). A run
from the launchpad may change the ops' config (`dry_run` reports without changing
anything)."""

# No `from __future__ import annotations`: Dagster reads the ops' annotations as objects.
import tempfile
from pathlib import Path

from dagster import (
    Config,
    DefaultScheduleStatus,
    Definitions,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from export_pipeline.defs.operations.sweep import sweep_expired
from export_pipeline.defs.resources import AppDatabase, MediaTools, StorageResource
from export_pipeline.domain.request import DEFAULT_RETENTION_DAYS
from export_pipeline.io.scratch import TEMP_MAX_AGE_HOURS, sweep_temp

RETENTION_JOB = "retention_job"
TEMP_SWEEP_JOB = "temp_sweep_job"


def work_dir(media: MediaTools) -> Path:
    """Where steps make their scratch directories (see `MediaTools.temp_dir`)."""
    return Path(media.work_dir) if media.work_dir else Path(tempfile.gettempdir())


class RetentionConfig(Config):
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        description="Days a request without a retention of its own (retention_days, "
        "expires_at) is kept after it finished.",
    )
    dry_run: bool = Field(default=False, description="Report only; change nothing.")


class TempSweepConfig(Config):
    max_age_hours: float = Field(
        default=TEMP_MAX_AGE_HOURS,
        gt=0,
        description="Remove scratch entries whose newest file is older than this.",
    )
    dry_run: bool = Field(default=False, description="Report only; remove nothing.")


@op(
    out=Out(Nothing),
    description="Delete the videos, work files, unshared clips and partitions of requests "
    "whose time is up (expires_at, or their own retention_days, else the default); mark "
    "complete rows expired.",
)
def expire_old_exports(
    context: OpExecutionContext,
    config: RetentionConfig,
    app_db: AppDatabase,
    storage: StorageResource,
):
    report = sweep_expired(
        app_db.store(),
        storage.open(),
        context.instance,
        config.retention_days,
        dry_run=config.dry_run,
        log=context.log.info,
    )
    if not report.requests:
        context.log.info(f"nothing due by {report.now:%Y-%m-%d %H:%M} UTC")
    yield Output(None, metadata=report.metadata())


@op(
    out=Out(Nothing),
    description="Remove step scratch directories (export-exp-*) older than max_age_hours.",
)
def sweep_temp_files(context: OpExecutionContext, config: TempSweepConfig, media: MediaTools):
    report = sweep_temp(work_dir(media), config.max_age_hours, dry_run=config.dry_run)
    verb = "would remove" if config.dry_run else "removed"
    context.log.info(
        f"{report.base}: {verb} {len(report.removed)} entr(y/ies), "
        f"{report.bytes_freed} bytes; {report.kept} recent one(s) kept"
    )
    metadata = {**report.metadata(), "work_dir": MetadataValue.path(str(report.base))}
    metadata["removed"] = MetadataValue.json(metadata["removed"])
    yield Output(None, metadata=metadata)


def build_retention_defs(
    retention_days: int = DEFAULT_RETENTION_DAYS,
    temp_max_age_hours: float = TEMP_MAX_AGE_HOURS,
    run_config: dict | None = None,
) -> Definitions:
    """The two jobs and their daily schedules (running by default). `retention_days` and
    `temp_max_age_hours` are the defaults of the ops' config (the settings); `run_config`
    is the jobs' default run config beyond that (the JSON console logger)."""

    def config(op_name: str, values: dict) -> dict:
        return {**(run_config or {}), "ops": {op_name: {"config": values}}}

    @job(
        name=RETENTION_JOB,
        executor_def=in_process_executor,
        config=config("expire_old_exports", {"retention_days": retention_days}),
        description="Retention: delete exports when their time is up (expires_at; by "
        f"default {retention_days} days after they finished).",
    )
    def retention_job():
        expire_old_exports()

    @job(
        name=TEMP_SWEEP_JOB,
        executor_def=in_process_executor,
        config=config("sweep_temp_files", {"max_age_hours": temp_max_age_hours}),
        description="Remove scratch directories that outlived their step.",
    )
    def temp_sweep_job():
        sweep_temp_files()

    def daily(job_def, cron: str, what: str) -> ScheduleDefinition:
        return ScheduleDefinition(
            name=job_def.name.replace("_job", "_schedule"),
            job=job_def,
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
            description=what,
        )

    return Definitions(
        jobs=[retention_job, temp_sweep_job],
        schedules=[
            daily(retention_job, "30 3 * * *", "Daily retention sweep."),
            daily(temp_sweep_job, "45 3 * * *", "Daily sweep of leftover scratch directories."),
        ],
    )
