"""Writes what a run is doing back to the request row, which the app polls.

Each asset runs its work inside `export_step(...)`: it loads and validates the request
for the partition, claims the row (`processing`, this run's id), turns fractions of work
into monotonic row progress (throttled), and on an exception decides between
`retrying` (Dagster will try again) and `failed` (final), with a message naming the step.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dagster import AssetExecutionContext, Failure, RetryRequested

from export_pipeline.defs.dagster_internals import RETRY_NUMBER_TAG
from export_pipeline.defs.intake.queue import update_queue
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import eta
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.failures import (
    ExportFailure,
    FailureCause,
    InvalidRequest,
    canceled,
)
from export_pipeline.domain.layout import request_id_from_key
from export_pipeline.domain.request import ExportSpec, parse_request
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import ObjectNotFound
from export_pipeline.observability.errors import report_step_exception
from export_pipeline.observability.logs import step_log_context

PROGRESS_INTERVAL_S = 1.0


class Heartbeat:
    """Touches the row's `updated_at` while a step runs, so a sweeper can tell a live
    export from one whose worker died without a word (SIGKILL, OOM, a lost machine)."""

    def __init__(self, store: RequestStore, request_id: int, run_id: str, every_s: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(store, request_id, run_id, every_s), daemon=True
        )

    def _beat(self, store: RequestStore, request_id: int, run_id: str, every_s: float) -> None:
        while not self._stop.wait(every_s):
            # A missed beat is not worth failing the export for.
            with contextlib.suppress(Exception):
                store.touch(request_id, run_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class ExportStep:
    context: AssetExecutionContext
    store: RequestStore
    spec: ExportSpec
    band: tuple[int, int]
    # for the time left: when this run started processing, and what the history expects
    started_at: datetime | None = None
    prior_s: float | None = None
    step_started: float = field(default_factory=time.monotonic)  # this step, this attempt
    _first: tuple[float, float] | None = None  # (fraction, monotonic) of the first report
    _written: int = -1
    _written_at: float = 0.0
    _logged: int = -10
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def request_id(self) -> int:
        return self.spec.request_id

    @property
    def partition_key(self) -> str:
        return self.context.partition_key

    def progress(self, fraction: float) -> None:
        """Report that `fraction` (0..1) of this step is done. Thread-safe, throttled."""
        low, high = self.band
        fraction = max(0.0, min(1.0, fraction))
        pct = int(low + (high - low) * fraction)
        now = time.monotonic()
        with self._lock:
            if self._first is None and 0 < fraction < 1:
                self._first = (fraction, now)
            if pct <= self._written:
                return
            if pct < high and now - self._written_at < PROGRESS_INTERVAL_S:
                return
            self._written, self._written_at = pct, now
            log_it = pct >= self._logged + 10 or pct == high
            if log_it:
                self._logged = pct
        eta_s, finish_at = self.time_left(pct, fraction)
        self.store.set_progress(
            self.request_id,
            pct,
            run_id=self.context.run_id,
            eta_s=eta_s,
            estimated_finish_at=finish_at,
        )
        if log_it:
            self.context.log.info(f"{self.partition_key}: {pct}% done")

    def time_left(self, pct: int, fraction: float) -> tuple[int | None, datetime | None]:
        """`eta_s` and `estimated_finish_at` at `pct` % done, `fraction` of this step
        (None, None: unknown)."""
        now = utcnow()
        elapsed = (now - as_utc(self.started_at)).total_seconds() if self.started_at else 0.0
        moment = time.monotonic()
        first = None if self._first is None else (self._first[0], moment - self._first[1])
        step = eta.Step(*self.band, fraction, moment - self.step_started, first)
        eta_s = eta.eta_seconds(eta.remaining_seconds(pct / 100, elapsed, self.prior_s, step))
        return eta_s, (now + timedelta(seconds=eta_s) if eta_s is not None else None)


def expected_seconds(store: RequestStore, spec: ExportSpec) -> float | None:
    """What recent exports like this one took (None: no history). An estimate is not worth
    failing a step or a sensor tick for."""
    try:
        history = eta.history_from_rows(store.recent_completed())
    except Exception:  # noqa: BLE001
        return None
    return eta.prior_for(history, spec)


def _load(store: RequestStore, request_id: int) -> tuple[dict, ExportSpec]:
    row = store.get(request_id)
    if row is None:
        raise Failure(
            f"export request {request_id} does not exist in the app database",
            allow_retries=False,
        )
    try:
        return row, parse_request(row)
    except InvalidRequest as exc:
        store.fail(request_id, st.FAILED, str(exc), exc.cause)
        raise Failure(str(exc), allow_retries=False) from exc


def check_not_canceled(store: RequestStore, request_id: int, row: dict | None = None) -> None:
    """Stop here if the app asked to cancel (the cancel sensor also ends the run): the row
    ends `canceled` and the failure says so. `row`: the request as just read, to spare
    another query."""
    row = row if row is not None else store.get(request_id) or {}
    if row.get("cancel_requested_at") is not None:
        failure = canceled()
        store.fail(request_id, st.CANCELED, str(failure), failure.cause)
        raise failure


def _canceled_meanwhile(store: RequestStore, request_id: int) -> ExportFailure | None:
    """A cancel that lands mid-step often surfaces as the step's own error (FFmpeg killed
    under it, a connection closed): such an export ends canceled now, never as a failure
    that waits for a retry while holding its run slot. The canceled failure, if so."""
    try:
        row = store.get(request_id) or {}
        check_not_canceled(store, request_id, row)
    except ExportFailure as failure:
        return failure
    except Exception:  # noqa: BLE001 - the step's own error is what gets reported then
        return None
    return None


def _claim(
    store: RequestStore,
    context: AssetExecutionContext,
    row: dict,
    band,
    prior_s: float | None,
) -> datetime | None:
    """Make the row this run's; returns when the run started processing."""
    request_id = int(row["id"])
    try:
        check_not_canceled(store, request_id, row)
    except ExportFailure as exc:
        raise Failure(str(exc), allow_retries=False) from exc
    fields: dict = {"run_id": context.run_id, "queued_at": queued_at(context)}
    if row.get("run_id") != context.run_id:
        # A new run (first attempt, re-execution or backfill) starts the row afresh ...
        fields.update(
            processing_started_at=utcnow(),
            completed_at=None,
            error_message=None,
            progress=band[0],
            eta_s=eta.eta_seconds(prior_s),
            estimated_finish_at=utcnow() + timedelta(seconds=prior_s) if prior_s else None,
        )
        # ... unless it is Dagster's automatic retry of a run that died: one more attempt.
        if int(context.run.tags.get(RETRY_NUMBER_TAG, "0")) > 0:
            fields.update(retry_count=(row.get("retry_count") or 0) + 1)
            fields.pop("progress")
    if not store.transition(request_id, st.PROCESSING, **fields):
        current = row.get("status")
        raise Failure(
            f"export request {request_id} is {current}; it cannot be processed now",
            allow_retries=False,
        )
    if "processing_started_at" in fields:
        _move_the_queue_up(context, store)
    return fields.get("processing_started_at", row.get("processing_started_at"))


def _move_the_queue_up(context: AssetExecutionContext, store: RequestStore) -> None:
    """A run that starts moves everyone behind it up now, not at the queue sensor's next
    tick (which a busy daemon can delay past a short export). Best effort: the sensor
    writes the same places anyway."""
    try:
        update_queue(context.instance, store)
    except Exception as exc:  # noqa: BLE001 - never fail an export over its queue display
        context.log.warning(f"queue places not updated at run start: {exc}")


@contextmanager
def export_step(
    context: AssetExecutionContext,
    app_db: AppDatabase,
    step_name: str,
    band: tuple[int, int],
    max_retries: int,
    fills_band: bool = True,
) -> Iterator[ExportStep]:
    store = app_db.store()
    request_id = request_id_from_key(context.partition_key)
    row, spec = _load(store, request_id)  # one read of the row per step start
    prior_s = expected_seconds(store, spec)  # one read of the history per step start
    started_at = _claim(store, context, row, band, prior_s)
    step = ExportStep(
        context=context,
        store=store,
        spec=spec,
        band=band,
        started_at=started_at,
        prior_s=prior_s,
    )
    try:
        with (
            step_log_context(
                request_id=request_id,
                partition=context.partition_key,
                step=step_name,
                attempt=context.retry_number + 1,
            ),
            Heartbeat(store, request_id, context.run_id, app_db.heartbeat_s),
        ):
            yield step
    except Exception as exc:
        failure = _canceled_meanwhile(store, request_id) or as_failure(exc)
        _record_failure(context, store, request_id, step_name, failure, max_retries)
        report_step_exception(
            exc,
            request_id=request_id,
            user_id=spec.user_id,
            partition=context.partition_key,
            step=step_name,
            step_key=step_key(context),
            attempt=context.retry_number + 1,
            run_id=context.run_id,
            job=context.job_name,
            permanent=failure.permanent,
        )
        if failure.permanent:
            raise Failure(f"{step_name}: {failure}", allow_retries=False) from exc
        if failure.retry_after_s:
            # The server said when to come back (HTTP 429/503 Retry-After): honour it.
            raise RetryRequested(max_retries, seconds_to_wait=failure.retry_after_s) from exc
        raise
    if fills_band:
        step.progress(1.0)


def step_key(context: AssetExecutionContext) -> str | None:
    """Dagster's key of the running step (`encoded_video_segment[3]` for a mapped one)."""
    try:
        key = str(context.op_handle)
        mapping = context.get_mapping_key()
        return f"{key}[{mapping}]" if mapping else key
    except Exception:  # noqa: BLE001 - a label, not worth failing over
        return None


def _is_boto_error(exc: BaseException) -> bool:
    """An S3 error (boto3/botocore). Checked without importing boto3 (~0.1 s of every run
    worker's start, issue 24): if it was never imported, the error cannot be one of its."""
    if "botocore.exceptions" not in sys.modules:
        return False
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError | Boto3Error)


def as_failure(exc: Exception) -> ExportFailure:
    """What an exception raised in a step means for the export: the `ExportFailure` the code
    raised, or for anything else its cause by type. Storage that blinked, a full disk, an
    unexpected error: worth another attempt. An object missing from storage, bad data or
    configuration: certain to happen again."""
    if isinstance(exc, ExportFailure):
        return exc
    if isinstance(exc, Failure):
        return ExportFailure(
            exc.description or type(exc).__name__,
            cause=FailureCause.OTHER,
            permanent=not exc.allow_retries,
        )
    if isinstance(exc, ObjectNotFound):
        return ExportFailure(
            f"{exc.key} is missing from storage: materialize downloaded_clips for this "
            "partition again",
            cause=FailureCause.STORAGE,
            permanent=True,
        )
    described = f"{type(exc).__name__}: {exc}"
    if _is_boto_error(exc):
        return ExportFailure(described, cause=FailureCause.STORAGE, permanent=False)
    if isinstance(exc, OSError):
        cause = FailureCause.STORAGE if exc.errno == errno.ENOSPC else FailureCause.OTHER
        permanent = exc.errno in (errno.ENAMETOOLONG, errno.EINVAL)
        return ExportFailure(described, cause=cause, permanent=permanent)
    if isinstance(exc, ValueError | TypeError | KeyError):  # bad data or configuration
        return ExportFailure(
            f"cannot export: {described}", cause=FailureCause.OTHER, permanent=True
        )
    return ExportFailure(described, cause=FailureCause.OTHER, permanent=False)


def _record_failure(
    context: AssetExecutionContext,
    store: RequestStore,
    request_id: int,
    step_name: str,
    failure: ExportFailure,
    max_retries: int,
) -> None:
    attempt = context.retry_number + 1
    try:
        if failure.permanent or context.retry_number >= max_retries:
            tries = "" if failure.permanent else f" (after {attempt} attempts)"
            message = f"{step_name} failed{tries}: {failure}"
            target = st.CANCELED if failure.cause == FailureCause.CANCELED else st.FAILED
            store.fail(request_id, target, message, failure.cause, only_run_id=context.run_id)
            context.log.error(f"{context.partition_key}: {message}")
        else:
            message = f"{step_name} attempt {attempt} failed, retrying: {failure}"
            store.increment_retry(request_id, message, failure.cause, context.run_id)
            context.log.warning(f"{context.partition_key}: {message}")
    except Exception as db_exc:  # never hide the step's own error behind a bookkeeping one
        context.log.error(f"could not record the failure on request {request_id}: {db_exc}")


def queued_at(context: AssetExecutionContext) -> datetime:
    """When the run was queued: its creation in Dagster (now, if the record is unreadable)."""
    try:
        record = context.instance.get_run_record_by_id(context.run_id)
        return datetime.fromtimestamp(record.create_timestamp.timestamp(), UTC)
    except Exception:  # noqa: BLE001 - a KPI's input, not worth failing the export over
        return utcnow()
