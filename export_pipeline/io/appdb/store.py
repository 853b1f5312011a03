"""Reads and writes of `export_requests` rows. Status changes go through `status.py`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    cast,
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
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.failures import FailureCause
from export_pipeline.domain.values import decode_json
from export_pipeline.io.appdb.schema import (
    create_schema,
    export_requests,
    export_segments,
    request_columns,
)

T = export_requests

# `clips` is read as text so that a malformed value written by the app becomes a
# validation error on that row instead of a decoding crash in whoever reads it.
# The app's JSON and flag columns are read as text: spec.py parses them, so a row holding
# invalid JSON (or 'yes' in a boolean column of SQLite) is refused with a message instead
# of failing whoever reads it.
_TEXT_COLUMNS = ("clips", "soundtrack", "captions", "audio_normalize")
_COLUMNS = [c for c in T.c if c.name not in _TEXT_COLUMNS] + [
    cast(T.c[name], Text).label(name) for name in _TEXT_COLUMNS
]


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL per process."""
    if url.startswith("sqlite"):
        # Several threads (sensor, steps, CLI polling) share the file; wait instead of failing.
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_pre_ping=True)


def _row(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return dict(mapping)


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


# Who a reminder goes to, and the column that claims it (once per completion each).
WEBHOOK, EMAIL = "webhook", "email"
_REMINDED = {WEBHOOK: T.c.reminded_at, EMAIL: T.c.reminder_emailed_at}


def _not_emailed():
    """The row's outcome has not been emailed (nor claimed): a new status, or the same one
    finished again after the last email (a re-export)."""
    return or_(
        T.c.emailed_status.is_(None),
        T.c.emailed_status != T.c.status,
        T.c.emailed_at < T.c.completed_at,
    )


class RequestStore:
    def __init__(self, engine: Engine):
        self.engine = engine

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
            row = conn.execute(select(*_COLUMNS).where(T.c.id == request_id)).mappings().first()
        return _row(row) if row else None

    def candidates(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Rows the sensor has not handed to Dagster yet, oldest first."""
        query = (
            select(*_COLUMNS)
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
            with self.engine.connect() as conn:
                return [_row(r) for r in conn.execute(query).mappings()]
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
        query = select(*_COLUMNS).order_by(T.c.id.desc()).limit(limit)
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
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

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
            select(*_COLUMNS)
            .where(
                T.c.cancel_requested_at.is_not(None),
                T.c.status.in_([st.PENDING, st.QUEUED, st.PROCESSING, st.RETRYING]),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def stalled(self, older_than: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Rows being worked on whose heartbeat stopped before `older_than`."""
        query = (
            select(*_COLUMNS)
            .where(
                T.c.status.in_([st.QUEUED, st.PROCESSING, st.RETRYING]),
                T.c.updated_at < older_than,
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

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
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def active(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Rows handed to Dagster and not finished (queued, processing, retrying), oldest first."""
        query = (
            select(*_COLUMNS)
            .where(T.c.status.in_([st.QUEUED, st.PROCESSING, st.RETRYING]))
            .order_by(T.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

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

    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(T.c.status, func.count()).group_by(T.c.status)).all()
        return {status: count for status, count in rows}

    # ---- operations (export_pipeline/ops): KPIs and retention

    def created_since(self, since: datetime) -> list[dict[str, Any]]:
        """Rows created at or after `since`, oldest first, without `clips` (for the KPIs)."""
        columns = [c for c in T.c if c.name != "clips"]
        query = select(*columns).where(T.c.created_at >= since).order_by(T.c.id)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def finished_before(
        self, before: datetime, statuses: list[str], ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Rows in one of `statuses` that finished before `before` (`completed_at`, or
        `updated_at` for a row without one), oldest first; only rows in `ids` if given."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*_COLUMNS).where(T.c.status.in_(statuses), finished_at < before).order_by(T.c.id)
        )
        if ids is not None:
            query = query.where(T.c.id.in_(ids))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def complete_due(self, now: datetime, unstamped_before: datetime) -> list[dict[str, Any]]:
        """Complete rows whose video is due for deletion: `expires_at` at or before `now`, or
        no `expires_at` (completed before the column existed) and finished before
        `unstamped_before` (the caller applies each one's own retention). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*_COLUMNS)
            .where(
                T.c.status == st.COMPLETE,
                or_(
                    T.c.expires_at <= now,
                    and_(T.c.expires_at.is_(None), finished_at < unstamped_before),
                ),
            )
            .order_by(T.c.id)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def retained(
        self, finished_before: datetime, exclude_ids: Collection[int] = ()
    ) -> list[dict[str, Any]]:
        """Rows whose stored objects retention may keep: not expired or rejected, not in
        `exclude_ids`, and not finished (complete, failed, canceled) before
        `finished_before` (the caller applies each row's own retention to the rest)."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        swept = T.c.status.in_([st.COMPLETE, st.FAILED, st.CANCELED]) & (
            finished_at < finished_before
        )
        query = (
            select(*_COLUMNS)
            .where(T.c.status.not_in([st.EXPIRED, st.REJECTED]), ~swept)
            .order_by(T.c.id)
        )
        with self.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query).mappings()]
        excluded = set(exclude_ids)
        return [r for r in rows if int(r["id"]) not in excluded]

    def owners(self, ids: Collection[int], chunk: int = 500) -> dict[int, str]:
        """{request id: user_id} of the rows among `ids` that exist (storage usage)."""
        wanted = sorted(set(ids))
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), chunk):
                query = select(T.c.id, T.c.user_id).where(T.c.id.in_(wanted[start : start + chunk]))
                found.update({int(i): str(user) for i, user in conn.execute(query)})
        return found

    # ---- the `expiring` reminder, to the app (defs.notify.reminder) and by email (mail)
    def expiring(
        self, now: datetime, until: datetime, limit: int = 100, channel: str = WEBHOOK
    ) -> list[dict[str, Any]]:
        """Complete rows not reminded yet on `channel` (`webhook`, or `email`: rows with a
        `notify_email`) whose video goes after `now` and at or before `until`, soonest first."""
        query = (
            select(*_COLUMNS)
            .where(
                T.c.status == st.COMPLETE,
                _REMINDED[channel].is_(None),
                T.c.video_url.is_not(None),
                T.c.expires_at > now,
                T.c.expires_at <= until,
            )
            .order_by(T.c.expires_at, T.c.id)
            .limit(limit)
        )
        if channel == EMAIL:
            query = query.where(T.c.notify_email.is_not(None))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def claim_reminder(
        self,
        request_id: int,
        expires_at: datetime,
        now: datetime,
        channel: str = WEBHOOK,
        **urls: str,
    ) -> bool:
        """Take the row's reminder on `channel` (`reminded_at` or `reminder_emailed_at` =
        `now`) if nobody has and it is still the same completion: one conditional UPDATE,
        so overlapping ticks send it once. `urls` (`video_url`, `poster_url` signed anew)
        are written with it."""
        column = _REMINDED[channel]
        query = update(T).where(
            T.c.id == request_id,
            T.c.status == st.COMPLETE,
            column.is_(None),
            T.c.expires_at == expires_at,
        )
        with self.engine.begin() as conn:
            values = {column.name: now, **urls}
            return conn.execute(query.values(**values)).rowcount == 1

    def release_reminder(
        self, request_id: int, claimed_at: datetime, channel: str = WEBHOOK
    ) -> bool:
        """Give back a claim whose delivery failed, so a later tick tries again."""
        column = _REMINDED[channel]
        query = update(T).where(T.c.id == request_id, column == claimed_at)
        with self.engine.begin() as conn:
            return conn.execute(query.values({column.name: None})).rowcount == 1

    # ---- the outcome email (export_pipeline.defs.notify.mail)
    def unemailed(
        self, statuses: Collection[str], since: datetime, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Rows with a `notify_email`, finished (in `statuses`) after `since`, whose outcome
        has not been emailed: a different `emailed_status`, or a newer `completed_at` than
        `emailed_at` (the same outcome again, after a re-export). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*_COLUMNS)
            .where(
                T.c.notify_email.is_not(None),
                T.c.status.in_(list(statuses)),
                finished_at >= since,
                _not_emailed(),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def claim_email(
        self, request_id: int, status: str, completed_at: datetime | None, now: datetime
    ) -> datetime | None:
        """Take the email of this outcome (`status` finished at `completed_at`) if nobody
        has and the row is still there: one conditional UPDATE of `emailed_status` and
        `emailed_at`, so overlapping ticks send it once. Returns the claim's moment (for
        `release_email`), None when the claim went to someone else or the row moved on."""
        same_completion = (
            T.c.completed_at.is_(None) if completed_at is None else T.c.completed_at == completed_at
        )
        # Never before the completion it reports (see mark_notified): or it looks new forever.
        stamp = now if completed_at is None else max(as_utc(now), as_utc(completed_at))
        query = update(T).where(
            T.c.id == request_id, T.c.status == status, same_completion, _not_emailed()
        )
        with self.engine.begin() as conn:
            result = conn.execute(query.values(emailed_status=status, emailed_at=stamp))
            return stamp if result.rowcount == 1 else None

    def release_email(
        self,
        request_id: int,
        claimed_at: datetime,
        previous_status: str | None,
        previous_at: datetime | None,
    ) -> bool:
        """Give back a claim whose sending failed (the row's `emailed_status` and
        `emailed_at` as they were before it), so a later tick tries again."""
        query = update(T).where(T.c.id == request_id, T.c.emailed_at == claimed_at)
        with self.engine.begin() as conn:
            values = {"emailed_status": previous_status, "emailed_at": previous_at}
            return conn.execute(query.values(**values)).rowcount == 1

    def clear_media_urls(self, request_id: int) -> bool:
        """Forget `video_url` and `poster_url` of a finished row whose objects retention
        deleted, so the app never shows a dead link. Only failed, canceled and expired rows
        change (a complete row loses its URL by becoming `expired`)."""
        query = update(T).where(
            T.c.id == request_id,
            T.c.status.in_([st.FAILED, st.CANCELED, st.EXPIRED]),
            T.c.video_url.is_not(None) | T.c.poster_url.is_not(None),
        )
        with self.engine.begin() as conn:
            values = {"video_url": None, "poster_url": None, "updated_at": utcnow()}
            return conn.execute(query.values(**values)).rowcount == 1

    # ---- rate limit (export_pipeline.domain.ratelimit) and completion webhook (notify)
    def recent_exports(
        self,
        user_ids: Collection[str],
        since: datetime,
        statuses: Collection[str],
        exclude_ids: Collection[int] = (),
    ) -> list[dict[str, Any]]:
        """id, user_id, status, run_id, created_at of these users' rows in `statuses`
        created after `since` (uses the (user_id, created_at) index)."""
        if not user_ids:
            return []
        query = select(T.c.id, T.c.user_id, T.c.status, T.c.run_id, T.c.created_at).where(
            T.c.user_id.in_(list(user_ids)),
            T.c.created_at > since,
            T.c.status.in_(list(statuses)),
        )
        if exclude_ids:
            query = query.where(T.c.id.not_in(list(exclude_ids)))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query.order_by(T.c.id)).mappings()]

    def unnotified(
        self, statuses: Collection[str], since: datetime, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Finished rows (in `statuses`, finished after `since`) whose outcome the app has
        not been notified of: a different `notified_status`, or a newer `completed_at` than
        `notified_at` (the same outcome again, after a re-export). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*_COLUMNS)
            .where(
                T.c.status.in_(list(statuses)),
                finished_at >= since,
                or_(
                    T.c.notified_status.is_(None),
                    T.c.notified_status != T.c.status,
                    T.c.notified_at < T.c.completed_at,
                ),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    def mark_notified(self, request_id: int, status: str, completed_at: datetime | None) -> bool:
        """Record that the app was told about this outcome, unless the row has moved on
        since (another status or completion) in the meantime. `updated_at` is left alone:
        it tracks the export, not its notification."""
        same_completion = (
            T.c.completed_at.is_(None) if completed_at is None else T.c.completed_at == completed_at
        )
        query = update(T).where(T.c.id == request_id, T.c.status == status, same_completion)
        # Never before the completion it reports, even if the clock of whoever wrote
        # completed_at runs ahead of ours: otherwise the outcome would look new forever.
        notified_at = utcnow()
        if completed_at is not None:
            notified_at = max(notified_at, as_utc(completed_at))
        with self.engine.begin() as conn:
            result = conn.execute(query.values(notified_status=status, notified_at=notified_at))
            return result.rowcount == 1


def for_display(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `clips` decoded when it is valid JSON (as the app wrote it otherwise)."""
    try:
        return {**row, "clips": decode_json(row["clips"])}
    except ValueError:
        return row
