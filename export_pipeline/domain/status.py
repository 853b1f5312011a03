"""The export status state machine: every status change on a request row goes through here.

The row is what the app shows the creator, so it must never move backwards by accident
(a late retry of an old run turning `complete` into `failed`, say). Deliberate re-exports
(re-execution, backfill, `retry`) go forward again through `queued`/`processing`.
"""

from __future__ import annotations

PENDING = "pending"
QUEUED = "queued"
PROCESSING = "processing"
RETRYING = "retrying"
COMPLETE = "complete"
FAILED = "failed"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({QUEUED, FAILED, CANCELED, REJECTED}),
    QUEUED: frozenset({QUEUED, PROCESSING, FAILED, CANCELED}),
    # processing -> processing: a re-execution or a later step of the same run claims the row.
    PROCESSING: frozenset({PROCESSING, RETRYING, COMPLETE, FAILED, CANCELED}),
    RETRYING: frozenset({PROCESSING, FAILED, CANCELED}),
    # A finished export can be produced again (re-execution, a backfill that puts it back
    # in line) or expire.
    COMPLETE: frozenset({PENDING, QUEUED, PROCESSING, EXPIRED}),
    # Re-execution from failure claims the row directly; `retry` puts it back in line.
    FAILED: frozenset({PENDING, QUEUED, PROCESSING}),
    CANCELED: frozenset({PENDING, QUEUED}),
    EXPIRED: frozenset({PENDING}),  # a backfill exports it again
    REJECTED: frozenset({PENDING}),
}

STATUSES: tuple[str, ...] = tuple(TRANSITIONS)
# What an operator's `retry` puts back in line; a backfill also takes finished exports.
RETRYABLE: frozenset[str] = frozenset({FAILED, CANCELED, REJECTED})
BACKFILLABLE: frozenset[str] = frozenset({COMPLETE, EXPIRED, FAILED, CANCELED, REJECTED})
TERMINAL: frozenset[str] = frozenset({COMPLETE, FAILED, CANCELED, EXPIRED, REJECTED})
ACTIVE: frozenset[str] = frozenset({QUEUED, PROCESSING, RETRYING})


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources(target: str) -> frozenset[str]:
    """The statuses from which `target` may be reached (used in conditional UPDATEs)."""
    if target not in TRANSITIONS:
        raise ValueError(f"unknown status {target!r}; known: {', '.join(STATUSES)}")
    return frozenset(s for s, nexts in TRANSITIONS.items() if target in nexts)
