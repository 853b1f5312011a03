"""What the app and the creator are told about a row, each exactly once: the completion
webhook (`notified_*`), the outcome email (`emailed_*`) and the expiry reminder on either
channel (`reminded_at`, `reminder_emailed_at`), each claimed by one conditional UPDATE."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.io.appdb.rows import COLUMNS, T, Table

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


class Notices(Table):
    def expiring(
        self, now: datetime, until: datetime, limit: int = 100, channel: str = WEBHOOK
    ) -> list[dict[str, Any]]:
        """Complete rows not reminded yet on `channel` (`webhook`, or `email`: rows with a
        `notify_email`) whose video goes after `now` and at or before `until`, soonest first."""
        query = (
            select(*COLUMNS)
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
        return self._all(query)

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

    def unemailed(
        self, statuses: Collection[str], since: datetime, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Rows with a `notify_email`, finished (in `statuses`) after `since`, whose outcome
        has not been emailed: a different `emailed_status`, or a newer `completed_at` than
        `emailed_at` (the same outcome again, after a re-export). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*COLUMNS)
            .where(
                T.c.notify_email.is_not(None),
                T.c.status.in_(list(statuses)),
                finished_at >= since,
                _not_emailed(),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
        return self._all(query)

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

    def unnotified(
        self, statuses: Collection[str], since: datetime, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Finished rows (in `statuses`, finished after `since`) whose outcome the app has
        not been notified of: a different `notified_status`, or a newer `completed_at` than
        `notified_at` (the same outcome again, after a re-export). Oldest first."""
        finished_at = func.coalesce(T.c.completed_at, T.c.updated_at)
        query = (
            select(*COLUMNS)
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
        return self._all(query)

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
