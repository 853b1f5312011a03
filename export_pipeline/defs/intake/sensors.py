"""Request intake: new `export_requests` rows become dynamic partitions and runs.

`export_requests_sensor` reads rows after its cursor (the last id handed over) in
batches, validates each, adds its partition and requests its run in one `SensorResult`
(`run_key` = partition key, so a re-evaluated tick never launches twice), and marks the
row `queued`. An invalid row is marked `failed` with the reason and skipped: it never
stops the sensor; a row the app already asked to cancel ends `canceled` without a run.
With a daily limit, a row beyond the user's limit ends `rejected` with the time they can
export again (`ratelimit.py`). An admitted row gets a first `eta_s` from recent exports like
it (`export_pipeline.domain.eta`); `queue.py` keeps it and the place in the queue current.
`supervision.py` holds the sensors that keep rows and runs in agreement afterwards.
"""

from __future__ import annotations

import time
from datetime import timedelta

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from sqlalchemy.exc import SQLAlchemyError

from export_pipeline.defs.intake.partitions import export_partitions, run_tags
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import eta
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import CANCELED_MESSAGE, FailureCause, InvalidRequest
from export_pipeline.domain.layout import partition_key
from export_pipeline.domain.ratelimit import (
    COUNTED_STATUSES,
    WINDOW,
    RateLimiter,
    history_from_rows,
)
from export_pipeline.domain.request import parse_request
from export_pipeline.io.appdb.store import RequestStore

JOB_NAME = "export_video_job"
# How often a waiting tick looks for new rows: one small indexed query.
POLL_S = 0.1


def rate_limiter(store: RequestStore, rows: list[dict], daily_limit: int) -> RateLimiter:
    """The limit for one tick: the batch's users' counted exports of the last 24 h,
    except the batch's own rows (they are counted as they are admitted)."""
    now = utcnow()
    if daily_limit <= 0:
        return RateLimiter(0, now)
    recent = store.recent_exports(
        {str(row["user_id"]) for row in rows},
        since=now - WINDOW,
        statuses=COUNTED_STATUSES,
        exclude_ids=[int(row["id"]) for row in rows],
    )
    return RateLimiter(daily_limit, now, history_from_rows(recent))


def admit(
    context: SensorEvaluationContext,
    store: RequestStore,
    row: dict,
    limiter: RateLimiter,
    max_duration_s: float,
    history: list[eta.Finished] | None = None,
) -> RunRequest | None:
    """Decide one row: its run request, or None when the row ended here (failed, canceled,
    rejected). Every outcome is written to the row before the cursor passes it."""
    request_id = int(row["id"])
    if "unreadable" in row:
        refusal = f"invalid export request: the row could not be read ({row['unreadable']})"
    else:
        try:
            spec = parse_request(row, max_duration_s)
            refusal = None
        except InvalidRequest as exc:
            refusal = str(exc)
    if refusal:
        store.fail(request_id, st.FAILED, refusal, FailureCause.INVALID_REQUEST)
        context.log.warning(f"export request {request_id} rejected: {refusal}")
        return None
    if row.get("cancel_requested_at") is not None:
        store.fail(request_id, st.CANCELED, CANCELED_MESSAGE, FailureCause.CANCELED)
        return None
    # An operator's `retry` (requeued_at) overrides the limit; the export still counts.
    if row["status"] == st.PENDING and not row.get("requeued_at"):
        refusal = limiter.admit(str(row["user_id"]), row.get("created_at"))
        if refusal:
            store.fail(request_id, st.REJECTED, refusal, FailureCause.RATE_LIMITED)
            context.log.info(f"export request {request_id} rejected: {refusal}")
            return None
    else:  # re-queued, or queued by an earlier tick whose cursor was lost
        limiter.record(str(row["user_id"]), row.get("created_at"))
    key = partition_key(request_id)
    # A re-queued export needs a run key of its own: the first one was used.
    requeued = row.get("requeued_at")
    run_key = f"{key}@{requeued.isoformat()}" if requeued else key
    # The job derives the same tags from the row; these stand if that read fails.
    tags = run_tags(request_id, spec.user_id, spec.project_id)
    # A first estimate of the time left; the queue sensor adds the wait once the run is queued.
    eta_s = eta.eta_seconds(eta.prior_for(history or [], spec))
    finish_at = utcnow() + timedelta(seconds=eta_s) if eta_s is not None else None
    store.transition(
        request_id, st.QUEUED, eta_s=eta_s, estimated_finish_at=finish_at, queued_at=utcnow()
    )
    return RunRequest(partition_key=key, run_key=run_key, tags=tags)


def wait_for_candidates(
    store: RequestStore, cursor: int, batch_size: int, wait_s: float, poll_s: float = POLL_S
) -> list[dict]:
    """The rows after `cursor`, looking again every `poll_s` for up to `wait_s` while there
    are none. The daemon evaluates its sensors every 5 s at most: a tick that ends at once
    leaves a new request waiting 2.5 s on average for the next; one that keeps looking takes
    it within `poll_s` (issue 24). The wait ends before the daemon's next look, which would
    otherwise skip a tick still running."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = store.candidates(cursor, batch_size)
        if rows or time.monotonic() + poll_s > deadline:
            return rows
        time.sleep(poll_s)


def build_export_requests_sensor(
    batch_size: int = 50,
    interval_s: int = 5,
    daily_limit: int = 0,
    max_duration_s: float = 600,
    wait_s: float = 0.0,
):
    """`daily_limit`: exports per user in a rolling 24 h (0 = no limit); `max_duration_s`:
    the longest export, so a clip asking for more fails at intake; `wait_s`: how long a tick
    with nothing to do keeps looking (`wait_for_candidates`)."""

    @sensor(
        name="export_requests_sensor",
        job_name=JOB_NAME,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Turns new export_requests rows into partitions and runs.",
    )
    def export_requests_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        store = app_db.store()
        cursor = int(context.cursor or 0)
        rows = wait_for_candidates(store, cursor, batch_size, wait_s)
        if not rows:
            return SkipReason(f"no new export requests after id {cursor}")

        limiter = rate_limiter(store, [r for r in rows if "unreadable" not in r], daily_limit)
        history = eta.history_from_rows(store.recent_completed())
        run_requests: list[RunRequest] = []
        new_keys: list[str] = []
        for row in rows:
            request_id = int(row["id"])
            try:
                request = admit(context, store, row, limiter, max_duration_s, history)
            except SQLAlchemyError as exc:  # the database, not the row: try again next tick
                context.log.error(f"export request {request_id}: database error, retrying: {exc}")
                break
            except Exception as exc:  # noqa: BLE001 - a bug must not stop intake: fail the row
                reason = f"invalid export request: it could not be handled ({exc!r:.300})"
                context.log.error(f"export request {request_id} failed: {reason}")
                try:
                    store.fail(request_id, st.FAILED, reason, FailureCause.INVALID_REQUEST)
                except SQLAlchemyError:
                    break
                request = None
            if request is not None:
                new_keys.append(request.partition_key)
                run_requests.append(request)
            cursor = max(cursor, request_id)

        context.log.info(f"{len(run_requests)} export(s) queued; cursor at id {cursor}")
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[export_partitions.build_add_request(new_keys)]
            if new_keys
            else [],
            cursor=str(cursor),
        )

    return export_requests_sensor
