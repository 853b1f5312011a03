"""Moments in UTC: the only time zone the pipeline stores, compares and shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """`2026-11-24T10:32:00Z`, to the second (None stays None)."""
    if moment is None:
        return None
    return as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_rounded_up(moment: datetime) -> str:
    """`2026-11-24T10:32:00Z`, rounded up to the second (trying at the shown time works)."""
    moment = as_utc(moment)
    whole = moment.replace(microsecond=0)
    if whole != moment:
        whole += timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")
