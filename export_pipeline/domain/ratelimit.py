"""Per-user export rate limit (product doc: 5 exports per user per day).

A rolling window: when a new request arrives, the user's *counted* exports created in the
last 24 hours are looked at; if there are already `limit` of them, the request ends
`rejected` (no partition, no run) with a message saying when the user can export again:
the moment enough of the counted exports have left the window.

What counts (`counts`) is what used, or is about to use, the encoding machines:

- `queued`, `processing`, `retrying`: handed to Dagster, running or about to run;
- `complete` (and `expired`, a complete export whose video was later removed);
- `failed` *after it reached Dagster* (`run_id` set): the run used the machines, and a
  user re-submitting an export that keeps failing should be slowed down like any other.

What does not count:

- `rejected`: never ran; counting refusals would lock out a user who simply retries;
- `canceled`: the user (or the app, when a project is deleted) withdrew it; charging for it
  would push users to wait out exports they no longer want;
- `failed` without a `run_id`: an invalid request refused by the sensor (or by the step's
  own validation before it claimed the row); nothing ran, and it is the app's bug more
  than the user's usage;
- `pending`: not decided yet (rows of the same sensor tick are counted as they are
  admitted, in id order, so a burst of rows in one tick cannot slip past the limit).

Exports count from their `created_at`. A row an operator put back in line (`retry`,
which sets `requeued_at`) is not refused: the operator decided; it still counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, iso_rounded_up

DEFAULT_DAILY_LIMIT = 5
WINDOW = timedelta(hours=24)

# Statuses that may count; `counts` refines `failed` by whether a run ever claimed the row.
COUNTED_STATUSES: frozenset[str] = frozenset(
    {st.QUEUED, st.PROCESSING, st.RETRYING, st.COMPLETE, st.EXPIRED, st.FAILED}
)


def counts(row: Mapping[str, Any]) -> bool:
    """Whether an `export_requests` row counts against its user's limit (see module doc)."""
    status = row.get("status")
    if status not in COUNTED_STATUSES:
        return False
    if status == st.FAILED:
        return bool(row.get("run_id"))
    return True


def next_allowed_at(
    counted: Iterable[datetime], now: datetime, limit: int, window: timedelta = WINDOW
) -> datetime | None:
    """None if one more export is allowed at `now`, else when it will be.

    `counted` are the creation times of the user's counted exports (any order; those
    outside the window are ignored). With n of them in the window and n >= limit, the user
    is back under the limit once the oldest n - limit + 1 have left it.
    """
    if limit <= 0:
        return None
    now = as_utc(now)
    start = now - window
    # No upper bound: a row stamped slightly "in the future" by the database's clock is
    # still a recent export.
    recent = sorted(t for t in map(as_utc, counted) if t > start)
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + window


def rejection_message(
    user_id: str, limit: int, retry_at: datetime, window: timedelta = WINDOW
) -> str:
    """`rate limit: 5 exports per 24 h per user; user-9 can export again at <ISO UTC>`."""
    span = f"{window.total_seconds() / 3600:g} h"
    noun = "export" if limit == 1 else "exports"
    return (
        f"rate limit: {limit} {noun} per {span} per user; "
        f"{user_id} can export again at {iso_rounded_up(retry_at)}"
    )


class RateLimiter:
    """The limit applied to one sensor tick: `admit` each pending row in id order.

    `history` maps a user to the creation times of their counted exports already in the
    database (excluding the rows of this tick); admitted rows are added as they go, so rows
    of one tick count against each other.
    """

    def __init__(
        self,
        limit: int,
        now: datetime,
        history: Mapping[str, Iterable[datetime]] | None = None,
        window: timedelta = WINDOW,
    ):
        self.limit = limit
        self.now = as_utc(now)
        self.window = window
        self._counted: dict[str, list[datetime]] = {
            user: [as_utc(t) for t in times] for user, times in (history or {}).items()
        }

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def record(self, user_id: str, created_at: datetime | None) -> None:
        """Count an export that is already admitted (a queued row seen again)."""
        self._counted.setdefault(user_id, []).append(as_utc(created_at or self.now))

    def admit(self, user_id: str, created_at: datetime | None = None) -> str | None:
        """None (and the export counts from now on) if allowed, else the rejection message."""
        if not self.enabled:
            return None
        retry_at = next_allowed_at(
            self._counted.get(user_id, ()), self.now, self.limit, self.window
        )
        if retry_at is not None:
            return rejection_message(user_id, self.limit, retry_at, self.window)
        self.record(user_id, created_at)
        return None


def history_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[datetime]]:
    """Creation times of counted exports per user, from rows with user_id, status, run_id
    and created_at (what `RequestStore.recent_exports` returns)."""
    history: dict[str, list[datetime]] = {}
    for row in rows:
        if counts(row) and row.get("created_at") is not None:
            history.setdefault(row["user_id"], []).append(as_utc(row["created_at"]))
    return history
