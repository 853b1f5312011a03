"""Sensors that keep request rows and Dagster runs in agreement, whatever happens.

- `export_failure_sensor`: a run failed for good -> the row is `failed` with the step and
  the reason, including failures no step could report itself.
- `export_canceled_run_sensor`: a run was canceled (from the UI, or by the cancel sensor)
  -> the row is `canceled`.
- `export_cancel_sensor`: the app set `cancel_requested_at` -> the queued run is dropped
  or the running one terminated (its step kills FFmpeg and removes its temporary files),
  and the row ends `canceled`.
- `export_sweeper_sensor`: a row whose run stopped sending heartbeats (a worker killed
  outright, a lost machine) -> the run is marked failed, so Dagster's run retry resumes it
  from the failed step, or the failure sensor ends the row; rows whose run already ended
  but which were never updated are reconciled.
"""

from datetime import timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from export_pipeline.defs.dagster_internals import (
    IN_PROGRESS_RUN_STATUSES,
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
)
from export_pipeline.defs.intake.sensors import JOB_NAME
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import CANCELED_MESSAGE, FailureCause
from export_pipeline.domain.layout import partition_key, request_id_from_key
from export_pipeline.io.appdb.store import RequestStore


def _request_id(run) -> int | None:
    try:
        return request_id_from_key(run.tags.get(PARTITION_NAME_TAG, ""))
    except ValueError:
        return None


def failure_message(context: RunFailureSensorContext) -> str:
    steps = context.get_step_failure_events()
    if steps:
        parts = []
        for event in steps:
            error = event.event_specific_data.error if event.event_specific_data else None
            reason = error.message.strip() if error else event.message
            parts.append(f"{event.step_key} failed: {reason}")
        return "; ".join(parts)
    return f"the export run failed: {context.failure_event.message}"


def build_export_failure_sensor(job):
    @run_failure_sensor(
        name="export_failure_sensor",
        monitored_jobs=[job],
        default_status=DefaultSensorStatus.RUNNING,
        description="Marks the request failed when its run fails for good.",
    )
    def export_failure_sensor(context: RunFailureSensorContext, app_db: AppDatabase):
        run = context.dagster_run
        if run.tags.get(WILL_RETRY_TAG) == "true":
            return  # a run-level retry follows; only the final failure counts
        request_id = _request_id(run)
        if request_id is None:
            return
        message = failure_message(context)
        changed = app_db.store().fail(
            request_id, st.FAILED, message[:4000], FailureCause.OTHER, only_run_id=run.run_id
        )
        if changed:
            context.log.info(f"export request {request_id} marked failed: {message[:200]}")

    return export_failure_sensor


def build_export_canceled_run_sensor(job):
    @run_status_sensor(
        name="export_canceled_run_sensor",
        run_status=DagsterRunStatus.CANCELED,
        monitored_jobs=[job],
        default_status=DefaultSensorStatus.RUNNING,
        description="Marks the request canceled when its run is canceled.",
    )
    def export_canceled_run_sensor(context: RunStatusSensorContext, app_db: AppDatabase):
        run = context.dagster_run
        request_id = _request_id(run)
        if request_id is None:
            return
        changed = app_db.store().fail(
            request_id,
            st.CANCELED,
            f"the export run {run.run_id} was canceled",
            FailureCause.CANCELED,
            only_run_id=run.run_id,
        )
        if changed:
            context.log.info(f"export request {request_id} marked canceled")

    return export_canceled_run_sensor


def active_runs(instance, request_id: int):
    return instance.get_runs(
        RunsFilter(
            job_name=JOB_NAME,
            tags={PARTITION_NAME_TAG: partition_key(request_id)},
            statuses=list(IN_PROGRESS_RUN_STATUSES),
        )
    )


def build_export_cancel_sensor(interval_s: int = 5):
    @sensor(
        name="export_cancel_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Cancels exports whose row has cancel_requested_at set.",
    )
    def export_cancel_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        store = app_db.store()
        rows = store.cancel_requested()
        if not rows:
            return SkipReason("no cancellations requested")
        for row in rows:
            request_id = int(row["id"])
            for run in active_runs(context.instance, request_id):
                context.log.info(f"export request {request_id}: canceling run {run.run_id}")
                context.instance.run_coordinator.cancel_run(run.run_id)
            store.fail(request_id, st.CANCELED, CANCELED_MESSAGE, FailureCause.CANCELED)
        return SkipReason(f"canceled {len(rows)} export(s)")

    return export_cancel_sensor


def reconcile(instance, store: RequestStore, row: dict, stall_timeout_s: float) -> str | None:
    """Bring one stalled row in line with its run; returns what was done, if anything."""
    request_id = int(row["id"])
    run = instance.get_run_by_id(row["run_id"]) if row.get("run_id") else None
    if run is None:
        return None  # queued rows wait in Dagster's queue for as long as it takes
    if run.status in IN_PROGRESS_RUN_STATUSES:
        if row["status"] == st.QUEUED or run.status != DagsterRunStatus.STARTED:
            return None
        message = (
            f"export request {request_id}: its run worker sent no heartbeat for "
            f"{stall_timeout_s:.0f} s and is presumed dead (killed or its machine lost)"
        )
        instance.report_run_failed(run, message)
        return message
    if run.tags.get(WILL_RETRY_TAG) == "true":
        return None  # Dagster retries this run; the retry claims the row
    if run.status == DagsterRunStatus.CANCELED:
        target, message = st.CANCELED, f"the export run {run.run_id} was canceled"
    elif run.status == DagsterRunStatus.FAILURE:
        target, message = st.FAILED, f"the export run {run.run_id} failed; see its logs in Dagster"
    else:
        target, message = st.FAILED, f"the export run {run.run_id} ended without publishing"
    cause = FailureCause.CANCELED if target == st.CANCELED else FailureCause.OTHER
    changed = store.fail(request_id, target, message, cause, only_run_id=run.run_id)
    return message if changed else None


def build_export_sweeper_sensor(stall_timeout_s: float = 900.0, interval_s: int = 30):
    @sensor(
        name="export_sweeper_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Finds exports whose worker died and hands them to retries or failure.",
    )
    def export_sweeper_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        store = app_db.store()
        cutoff = utcnow() - timedelta(seconds=stall_timeout_s)
        done = []
        for row in store.stalled(cutoff):
            outcome = reconcile(context.instance, store, row, stall_timeout_s)
            if outcome:
                context.log.warning(outcome)
                done.append(outcome)
        return SkipReason(f"{len(done)} stalled export(s) handled" if done else "none stalled")

    return export_sweeper_sensor
