"""Reads over many rows for the operations: KPIs, retention, storage usage, the rate limit."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.io.appdb.rows import COLUMNS, T, Table, as_row


class Reports(Table):
    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(T.c.status, func.count()).group_by(T.c.status)).all()
        return {status: count for status, count in rows}

    def created_since(self, since: datetime) -> list[dict[str, Any]]:
        """Rows created at or after `since`, oldest first, without `clips` (for the KPIs)."""
        columns = [c for c in T.c if c.name != "clips"]
        query = select(*columns).where(T.c.created_at >= since).order_by(T.c.id)
        return self._all(query)

    def finished_before(
        self, before: datetime, statuses: list[str], ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Rows in one of `statuses` that finished before `before` (`completed_at`, or
        `updated_at` for a row without one), oldest first; only rows in `ids` if given."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*COLUMNS).where(T.c.status.in_(statuses), finished_at < before).order_by(T.c.id)
        )
        if ids is not None:
            query = query.where(T.c.id.in_(ids))
        return self._all(query)

    def complete_due(self, now: datetime, unstamped_before: datetime) -> list[dict[str, Any]]:
        """Complete rows whose video is due for deletion: `expires_at` at or before `now`, or
        no `expires_at` (completed before the column existed) and finished before
        `unstamped_before` (the caller applies each one's own retention). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*COLUMNS)
            .where(
                T.c.status == st.COMPLETE,
                or_(
                    T.c.expires_at <= now,
                    and_(T.c.expires_at.is_(None), finished_at < unstamped_before),
                ),
            )
            .order_by(T.c.id)
        )
        return self._all(query)

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
            select(*COLUMNS)
            .where(T.c.status.not_in([st.EXPIRED, st.REJECTED]), ~swept)
            .order_by(T.c.id)
        )
        with self.engine.connect() as conn:
            rows = [as_row(r) for r in conn.execute(query).mappings()]
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
        return self._all(query.order_by(T.c.id))
