"""What an email says about a request row: the values its templates are given.

Every kind gets the same names (None where the row has nothing), so a template may use
any of them; `SAMPLE_ROW` shows them all and is what operator templates are checked with.

| name | what |
| --- | --- |
| `kind` | `completion`, `failure` or `expiring` |
| `request_id`, `export_id` | `42`, `exp-42` |
| `project_id`, `status` | as on the row |
| `video_url`, `poster_url` | the links (the expiry reminder's are signed when it is sent) |
| `duration`, `duration_s` | `1:05`, `65.2` |
| `size`, `size_bytes` | `12.3 MB`, `12897484` |
| `completed_at`, `kept_until` | `Monday 23 November 2026, 10:32 UTC` (`kept_until`: `expires_at`) |
| `kept_until_date`, `kept_until_iso` | `23 November 2026`, `2026-11-23T10:32:05Z` |
| `time_left` | until `kept_until`, from when the email is sent: `2 days`, `5 hours` |
| `error_message`, `error_cause` | the row's (scrubbed by the caller: observability.scrub) |
| `what_to_do` | one sentence for the cause (`domain.failures.what_to_do`) |
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from export_pipeline.domain.clock import as_utc, iso
from export_pipeline.domain.failures import cause_of_row, what_to_do
from export_pipeline.domain.values import human_bytes

KINDS = ("completion", "failure", "expiring")


def duration_text(seconds: float | None) -> str | None:
    """`0:12`, `1:05`, `1:02:03`: how players show a length (to the nearest second)."""
    if seconds is None:
        return None
    total = int(float(seconds) + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def moment_text(moment: datetime | None) -> str | None:
    """`Monday 23 November 2026, 10:32 UTC`."""
    if moment is None:
        return None
    m = as_utc(moment)
    return f"{m:%A} {m.day} {m:%B %Y, %H:%M} UTC"


def date_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    m = as_utc(moment)
    return f"{m.day} {m:%B %Y}"


def time_left_text(until: datetime | None, now: datetime) -> str | None:
    """`2 days`, `1 day`, `5 hours`, `less than an hour` (None once it has passed)."""
    if until is None:
        return None
    left = as_utc(until) - as_utc(now)
    if left <= timedelta(0):
        return None
    if left >= timedelta(days=1):
        days = round(left / timedelta(days=1))
        return f"{days} day" + ("s" if days != 1 else "")
    hours = int(left / timedelta(hours=1))
    if hours >= 1:
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return "less than an hour"


def email_values(kind: str, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The values of `kind`'s templates for `row` (`now`: when the email is sent)."""
    if kind not in KINDS:
        raise ValueError(f"no email of kind {kind!r} (one of {', '.join(KINDS)})")
    request_id = int(row["id"])
    duration = row.get("output_duration_s")
    size = row.get("output_bytes")
    message = row.get("error_message")
    failed = kind == "failure"
    cause = cause_of_row(row) if failed else None
    return {
        "kind": kind,
        "request_id": request_id,
        "export_id": f"exp-{request_id}",
        "project_id": row.get("project_id"),
        "status": row.get("status"),
        "video_url": row.get("video_url"),
        "poster_url": row.get("poster_url"),
        "duration": duration_text(duration),
        "duration_s": None if duration is None else round(float(duration), 3),
        "size": None if size is None else human_bytes(int(size)),
        "size_bytes": None if size is None else int(size),
        "completed_at": moment_text(row.get("completed_at")),
        "kept_until": moment_text(row.get("expires_at")),
        "kept_until_date": date_text(row.get("expires_at")),
        "kept_until_iso": iso(row.get("expires_at")),
        "time_left": time_left_text(row.get("expires_at"), now),
        "error_message": str(message) if failed and message else None,
        "error_cause": None if cause is None else str(cause),
        "what_to_do": None if cause is None else what_to_do(cause),
    }


# A row with every value set: what templates are checked with before they are used.
SAMPLE_ROW: dict[str, Any] = {
    "id": 42,
    "project_id": "project-7",
    "status": "complete",
    "video_url": "https://storage.example/videos/exp-42.mp4?X-Amz-Signature=sample",
    "poster_url": "https://storage.example/videos/exp-42.jpg?X-Amz-Signature=sample",
    "output_duration_s": 65.2,
    "output_bytes": 12_897_484,
    "completed_at": datetime(2026, 11, 16, 10, 32, 5, tzinfo=UTC),
    "expires_at": datetime(2026, 11, 23, 10, 32, 5, tzinfo=UTC),
    "error_message": "downloaded_clips failed: clip 3 (scene 7): its source URL has expired "
    "or was removed (HTTP 403); regenerate the clip and export again",
    "error_cause": "expired_clip_url",
}
SAMPLE_NOW = datetime(2026, 11, 21, 10, 32, 5, tzinfo=UTC)
