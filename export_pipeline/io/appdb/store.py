"""Reads and writes of `export_requests` rows. Status changes go through `domain.status`."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    and_,
    create_engine,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import FailureCause
from export_pipeline.domain.values import decode_json
from export_pipeline.io.appdb.notices import Notices
from export_pipeline.io.appdb.reports import Reports
from export_pipeline.io.appdb.rows import COLUMNS, as_row
from export_pipeline.io.appdb.schema import (
    create_schema,
    export_requests,
    export_segments,
    request_columns,
)

T = export_requests


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL per process."""
    if url.startswith("sqlite"):
        # Several threads (sensor, steps, CLI polling) share the file; wait instead of failing.
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_pre_ping=True)


# What the app shows a waiting creator (README, issue 11): time left and place in the queue.
_NO_ETA = {"eta_s": None, "estimated_finish_at": None}
_NO_QUEUE = {"queue_position": None, "queue_reason": None}


def _cleared_by(target: str) -> dict[str, Any]:
    """Columns a move to `target` resets: a finished export has no time left and no place in
    the queue; a started one is out of the queue; one waiting for a retry has an unknown ETA."""
    if target in st.TERMINAL or target in (st.PENDING, st.RETRYING):
        return {**_NO_ETA, **_NO_QUEUE}
    if target == st.PROCESSING:
        return dict(_NO_QUEUE)
    return {}


class RequestStore(Notices, Reports):
    """The one gateway to `export_requests`: the request's life (here), what the app and
    the creator are told (`Notices`) and the operations' reads (`Reports`)."""

    @classmethod
    def from_url(cls, url: str) -> RequestStore:
        return cls(engine_for(url))

    def create_schema(self) -> None:
        create_schema(self.engine)

    # ---- the app's side (also used by the CLI and tests)
    def insert(self, **request: Any) -> int:
        """Insert a request as the app does: any of the request's columns
        (`schema.request_columns`); those left None keep their default."""
        unknown = set(request) - set(request_columns())
        if unknown:
            raise TypeError(f"not columns of a request: {sorted(unknown)}")
        values = {name: value for name, value in request.items() if value is not None}
        with self.engine.begin() as conn:
            result = conn.execute(insert(T).values(**values))
            return int(result.inserted_primary_key[0])

    def reexport(self, request_id: int) -> int | None:
        """A new request made of every request column of `request_id` as it is (None: no
        such row): the same export again, whatever the app asked for."""
        names = request_columns()
        with self.engine.begin() as conn:
            row = conn.execute(select(*(T.c[n] for n in names)).where(T.c.id == request_id))
            found = row.mappings().first()
            if found is None:
                return None
            result = conn.execute(insert(T).values(**dict(found)))
            return int(result.inserted_primary_key[0])

    def get(self, request_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*COLUMNS).where(T.c.id == request_id)).mappings().first()
        return as_row(row) if row else None

    def candidates(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Rows the sensor has not handed to Dagster yet, oldest first."""
        query = (
            select(*COLUMNS)
            .where(
                or_(
                    and_(T.c.id > after_id, T.c.status.in_([st.PENDING, st.QUEUED])),
                    # re-queued by `export-pipeline retry`: behind the cursor, but pending again
                    and_(T.c.status == st.PENDING, T.c.requeued_at.is_not(None)),
                )
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        try:
            return self._all(query)
        except Exception:  # noqa: BLE001 - perhaps one row the driver cannot decode
            ids_query = query.with_only_columns(T.c.id)
            with self.engine.connect() as conn:  # if this fails too, the database is down
                ids = list(conn.execute(ids_query).scalars())
            return [self._readable(request_id) for request_id in ids]

    def _readable(self, request_id: int) -> dict[str, Any]:
        """The row, or `{"id", "unreadable": reason}` when the driver cannot decode it (bytes
        that are not UTF-8 in a SQLite text column, a timestamp that is not one): such a row
        must be failed, not stop everyone queued behind it."""
        try:
            return self.get(request_id) or {"id": request_id, "unreadable": "the row vanished"}
        except Exception as exc:  # noqa: BLE001
            return {"id": request_id, "unreadable": f"{type(exc).__name__}: {str(exc)[:200]}"}

    def list(
        self,
        *,
        status: str | None = None,
        user_id: str | None = None,
        project_id: str | None = None,
        since: datetime | None = None,
        ids: Collection[int] | None = None,
        statuses: Collection[str] | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        query = select(*COLUMNS).order_by(T.c.id.desc()).limit(limit)
        if status:
            query = query.where(T.c.status == status)
        if statuses is not None:
            query = query.where(T.c.status.in_(list(statuses)))
        if ids is not None:
            query = query.where(T.c.id.in_(list(ids)))
        if user_id:
            query = query.where(T.c.user_id == user_id)
        if project_id:
            query = query.where(T.c.project_id == project_id)
        if since:
            query = query.where(T.c.created_at >= since)
        return self._all(query)

    # ---- the pipeline's side
    def transition(
        self,
        request_id: int,
        target: str,
        *,
        only_run_id: str | None = None,
        **fields: Any,
    ) -> bool:
        """Move a row to `target` if the state machine allows it from its current status.

        The check and the write are one conditional UPDATE, so concurrent writers cannot
        race a row backwards. `only_run_id` restricts the change to rows whose latest run
        is that run (a stale run's late failure must not overwrite a newer result).
        Returns whether the row changed.
        """
        if fields.get("error_message") is not None and fields.get("error_cause") is None:
            raise ValueError("an error_message is written with its error_cause (use `fail`)")
        if "error_message" in fields and fields["error_message"] is None:
            fields["error_cause"] = None
        query = update(T).where(T.c.id == request_id, T.c.status.in_(st.sources(target)))
        if only_run_id is not None:
            query = query.where(or_(T.c.run_id.is_(None), T.c.run_id == only_run_id))
        values = {"status": target, "updated_at": utcnow(), **_cleared_by(target), **fields}
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def fail(
        self,
        request_id: int,
        target: str,
        message: str,
        cause: FailureCause,
        *,
        only_run_id: str | None = None,
    ) -> bool:
        """End the row in `target` (failed, canceled, rejected) with what went wrong: the
        message and its cause, written together. See `transition` for `only_run_id`."""
        return self.transition(
            request_id,
            target,
            only_run_id=only_run_id,
            error_message=message,
            error_cause=str(FailureCause(cause)),
            completed_at=utcnow(),
        )

    def set_progress(
        self,
        request_id: int,
        progress: int,
        run_id: str | None = None,
        eta_s: int | None = None,
        estimated_finish_at: datetime | None = None,
    ) -> bool:
        """Raise progress (never lower it) while the row is being processed; the time left
        (None: unknown) is written in the same UPDATE."""
        progress = max(0, min(100, int(progress)))
        query = update(T).where(
            T.c.id == request_id,
            T.c.status == st.PROCESSING,
            T.c.progress < progress,
        )
        if run_id is not None:
            query = query.where(T.c.run_id == run_id)
        with self.engine.begin() as conn:
            values = dict(
                progress=progress,
                eta_s=eta_s,
                estimated_finish_at=estimated_finish_at,
                updated_at=utcnow(),
            )
            result = conn.execute(query.values(**values))
            return result.rowcount == 1

    # ---- segments of an encode spread over steps (`encode.assets`)
    def start_segments(self, request_id: int, seconds: list[float], done: list[float]) -> None:
        """The segments of the request's encode: their lengths and how much of each is done
        (1 for one already in the cache); replaces what an earlier plan wrote."""
        S = export_segments
        rows = [
            {"request_id": request_id, "segment": n, "seconds": length, "done": fraction}
            for n, (length, fraction) in enumerate(zip(seconds, done, strict=True))
        ]
        with self.engine.begin() as conn:
            conn.execute(delete(S).where(S.c.request_id == request_id))
            if rows:
                conn.execute(insert(S), rows)

    def segment_progress(self, request_id: int, done: Mapping[int, float]) -> float | None:
        """Record how much of some segments is done ({segment: fraction}), in one
        transaction; returns the fraction of the whole encode done (by length), None if no
        plan is recorded."""
        S = export_segments
        with self.engine.begin() as conn:
            for segment, fraction in done.items():
                conn.execute(
                    update(S)
                    .where(S.c.request_id == request_id, S.c.segment == segment)
                    .values(done=max(0.0, min(1.0, fraction)))
                )
            whole, total = conn.execute(
                select(func.sum(S.c.seconds * S.c.done), func.sum(S.c.seconds)).where(
                    S.c.request_id == request_id
                )
            ).one()
        return None if not total else float(whole) / float(total)

    def end_segments(self, request_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(export_segments).where(export_segments.c.request_id == request_id))

    def touch(self, request_id: int, run_id: str) -> bool:
        """Heartbeat: refresh `updated_at` while `run_id` is working on the row."""
        query = update(T).where(
            T.c.id == request_id,
            T.c.run_id == run_id,
            T.c.status.in_([st.PROCESSING, st.RETRYING]),
        )
        with self.engine.begin() as conn:
            return conn.execute(query.values(updated_at=utcnow())).rowcount == 1

    def cancel_requested(self, limit: int = 100) -> list[dict[str, Any]]:
        """Rows the app asked to cancel that are not finished yet."""
        query = (
            select(*COLUMNS)
            .where(
                T.c.cancel_requested_at.is_not(None),
                T.c.status.in_([st.PENDING, st.QUEUED, st.PROCESSING, st.RETRYING]),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        return self._all(query)

    def stalled(self, older_than: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Rows being worked on whose heartbeat stopped before `older_than`."""
        query = (
            select(*COLUMNS)
            .where(
                T.c.status.in_([st.QUEUED, st.PROCESSING, st.RETRYING]),
                T.c.updated_at < older_than,
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        return self._all(query)

    def request_cancel(self, request_id: int) -> bool:
        """What the app does to cancel (also used by the operator CLI)."""
        query = update(T).where(T.c.id == request_id, T.c.cancel_requested_at.is_(None))
        with self.engine.begin() as conn:
            return conn.execute(query.values(cancel_requested_at=utcnow())).rowcount == 1

    def requeue(self, request_id: int, statuses: Collection[str] = st.RETRYABLE) -> bool:
        """Put an export in one of `statuses` back in line: the sensor takes it again (the
        operator's `retry`: failed, canceled or rejected; a backfill: any finished one)."""
        allowed = set(statuses) & st.sources(st.PENDING)
        query = update(T).where(T.c.id == request_id, T.c.status.in_(allowed))
        values = {
            "status": st.PENDING,
            "requeued_at": utcnow(),
            "cancel_requested_at": None,
            "error_message": None,
            "error_cause": None,
            "progress": 0,
            "completed_at": None,
            "updated_at": utcnow(),
            **_cleared_by(st.PENDING),
        }
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def increment_retry(
        self, request_id: int, error_message: str, cause: FailureCause, run_id: str
    ) -> bool:
        """Record a failed attempt that Dagster will retry: status `retrying`."""
        query = update(T).where(
            T.c.id == request_id,
            T.c.status.in_(st.sources(st.RETRYING)),
            or_(T.c.run_id.is_(None), T.c.run_id == run_id),
        )
        values = {
            "status": st.RETRYING,
            "retry_count": T.c.retry_count + 1,
            "error_message": error_message,
            "error_cause": str(FailureCause(cause)),
            "updated_at": utcnow(),
            **_cleared_by(st.RETRYING),
        }
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    # ---- time left and place in the queue (export_pipeline.domain.eta, intake/queue.py)
    def recent_completed(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest completed exports (resolution, format, output_duration_s,
        processing_started_at, completed_at), newest first: the history ETAs come from."""
        query = (
            select(
                T.c.resolution,
                T.c.format,
                T.c.output_duration_s,
                T.c.processing_started_at,
                T.c.completed_at,
            )
            .where(T.c.status == st.COMPLETE, T.c.processing_started_at.is_not(None))
            .order_by(T.c.id.desc())
            .limit(limit)
        )
        return self._all(query)

    def active(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Rows handed to Dagster and not finished (queued, processing, retrying), oldest first."""
        query = (
            select(*COLUMNS)
            .where(T.c.status.in_([st.QUEUED, st.PROCESSING, st.RETRYING]))
            .order_by(T.c.id)
            .limit(limit)
        )
        return self._all(query)

    def set_queue_place(
        self,
        request_id: int,
        position: int | None,
        reason: str | None,
        eta_s: int | None,
        estimated_finish_at: datetime | None,
    ) -> bool:
        """Place in the queue and time left of a row that is still `queued`. `updated_at` is
        left alone: it tracks the export (the sweeper reads it), not the queue around it."""
        query = update(T).where(T.c.id == request_id, T.c.status == st.QUEUED)
        values = dict(
            queue_position=position,
            queue_reason=reason,
            eta_s=eta_s,
            estimated_finish_at=estimated_finish_at,
        )
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1


def for_display(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its JSON columns (`clips`, `soundtrack`, `captions`) decoded where they
    are valid JSON (as the app wrote them otherwise)."""
    shown = dict(row)
    for name in ("clips", "soundtrack", "captions"):
        if isinstance(shown.get(name), str):
            with contextlib.suppress(ValueError):
                shown[name] = decode_json(shown[name])
    return shown
