"""Why an export failed, as data: one exception type, `ExportFailure`, with its cause.

The code that knows why something failed raises an `ExportFailure` with a `FailureCause`
and says whether trying again can help (`permanent`). The cause travels with the message
to the request row (`error_cause` beside `error_message`), and the KPIs, the alerts and
the completion webhook read it there: nothing parses a message to find its cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from export_pipeline.domain import status as st


class FailureCause(StrEnum):
    """Why a request ended badly (the row's `error_cause`)."""

    EXPIRED_CLIP_URL = "expired_clip_url"  # the CDN answered 401/403/404/410
    INVALID_CLIP_FILE = "invalid_clip_file"  # not a video, corrupt, a playlist, too large
    INVALID_REQUEST = "invalid_request"  # refused by validation, a URL we may not fetch
    RATE_LIMITED = "rate_limited"  # the user's daily limit: `rejected`, no run
    CLIP_DOWNLOAD = "clip_download"  # CDN 5xx/429, timeouts, cut-short bodies
    FFMPEG = "ffmpeg"  # encoding failed
    STORAGE = "storage"  # quota full, object storage refusing, objects missing, disk full
    CANCELED = "canceled"  # the app asked, or the run was canceled
    OTHER = "other"  # a dead worker, a bug: read the run's logs


CAUSES: tuple[str, ...] = tuple(cause.value for cause in FailureCause)

# What the creator can do about a failure of each cause (the failure email says it after
# the message, which names the clip or the limit).
_WHAT_TO_DO = {
    FailureCause.EXPIRED_CLIP_URL: (
        "Regenerate the clip named above in your project, then export again."
    ),
    FailureCause.INVALID_CLIP_FILE: (
        "Regenerate or upload the clip named above again, then export again."
    ),
    FailureCause.INVALID_REQUEST: (
        "Check the project's clips, captions and soundtrack and export again; if it happens "
        "again, contact support with the export number."
    ),
    FailureCause.RATE_LIMITED: "Export again after the time given above.",
    FailureCause.CLIP_DOWNLOAD: (
        "Your clips could not be fetched after several tries; export again in a few minutes."
    ),
    FailureCause.FFMPEG: (
        "Export again; if it fails again, contact support with the export number."
    ),
    FailureCause.STORAGE: (
        "Export again later; if your storage is full, delete old exports first."
    ),
    FailureCause.CANCELED: (
        "Nothing: the export was canceled. Export again when you want the video."
    ),
    FailureCause.OTHER: "Export again; if it fails again, contact support with the export number.",
}


def what_to_do(cause: FailureCause | str) -> str:
    """One sentence telling the creator what to do after a failure of this cause."""
    try:
        return _WHAT_TO_DO[FailureCause(cause)]
    except ValueError:
        return _WHAT_TO_DO[FailureCause.OTHER]


class ExportFailure(Exception):
    """A failure explained for the creator, with its cause. A `permanent` one is not worth
    another attempt; a transient one may say how long to wait (`retry_after_s`, an HTTP
    Retry-After). `context` is what an error tracker should see beside the message (an
    FFmpeg run's exit code and stderr tail)."""

    def __init__(
        self,
        message: str,
        *,
        cause: FailureCause,
        permanent: bool,
        retry_after_s: float | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.cause = FailureCause(cause)
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.context = dict(context or {})

    def within(self, what: str) -> ExportFailure:
        """The same failure, its message prefixed with `what` (`clip 3 (scene 7): ...`)."""
        return ExportFailure(
            f"{what}: {self}",
            cause=self.cause,
            permanent=self.permanent,
            retry_after_s=self.retry_after_s,
            context=self.context,
        )


class InvalidRequest(ExportFailure):
    """The request cannot be exported as written; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, cause=FailureCause.INVALID_REQUEST, permanent=True)


# The row of an export the app canceled (`cancel_requested_at`).
CANCELED_MESSAGE = "canceled at the app's request (cancel_requested_at is set)"


def canceled() -> ExportFailure:
    return ExportFailure(CANCELED_MESSAGE, cause=FailureCause.CANCELED, permanent=True)


def cause_of_row(row: Mapping[str, Any]) -> FailureCause:
    """The cause of a finished row: its `error_cause`, or for a row written before the
    column existed, what its status says (canceled, rejected: the rate limit; failed
    before any run: refused at intake), else `other`."""
    written = row.get("error_cause")
    if written in CAUSES:
        return FailureCause(written)
    status = row.get("status")
    if status == st.CANCELED:
        return FailureCause.CANCELED
    if status == st.REJECTED:
        return FailureCause.RATE_LIMITED
    if status == st.FAILED and not row.get("run_id"):
        return FailureCause.INVALID_REQUEST
    return FailureCause.OTHER
