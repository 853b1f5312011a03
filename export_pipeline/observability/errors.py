"""Error tracking with Sentry (sentry-sdk), off unless `SENTRY_DSN` is set.

`init_error_tracking` runs when the definitions are imported, so the code server, the
daemon's sensor evaluations and every run worker report to the same project. Events are
explicit: `report_step_exception` sends each exception a step raises (every attempt, the
retried ones too), tagged with the request, user, partition, step and attempt, with
FFmpeg's stderr tail as context when FFmpeg was the cause. Logging only leaves breadcrumbs
(Dagster logs each step failure at ERROR level: sending those too would double every
event). `before_send` passes every event through `scrub`: no URL query strings (signed
clip and video URLs), no credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from export_pipeline.domain.failures import ExportFailure
from export_pipeline.observability.scrub import scrub


def before_send(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's `before_send`/`before_send_transaction`: the event with secrets removed."""
    return scrub(event)


def _breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    return scrub(crumb)


def init_error_tracking(
    dsn: str | None,
    *,
    environment: str | None = None,
    release: str | None = None,
    transport: Any = None,
) -> bool:
    """Start the Sentry client when `dsn` is set; returns whether it is on. Safe to call
    again (the latest call wins, as with `sentry_sdk.init`)."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=_breadcrumb,
        send_default_pii=False,
        # Local variables of a step's frames hold resources, settings and URLs: never sent.
        include_local_variables=False,
        max_request_body_size="never",
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        traces_sample_rate=0.0,
        **options,
    )
    return True


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_context(exc: BaseException) -> tuple[str, dict[str, Any]] | None:
    """What Sentry should know beside the message: the first `ExportFailure` in the chain
    that carries a context (an FFmpeg run's exit code and stderr tail), under its cause."""
    for link in _chain(exc):
        if isinstance(link, ExportFailure) and link.context:
            return str(link.cause), link.context
    return None


def report_step_exception(
    exc: BaseException,
    *,
    request_id: int | None,
    user_id: str | None,
    partition: str | None,
    step: str,
    attempt: int,
    step_key: str | None = None,
    run_id: str | None = None,
    job: str | None = None,
    permanent: bool = False,
) -> str | None:
    """Send `exc` to Sentry with the step's tags; returns the event id (None when off).
    Never raises: error tracking must not change how a step fails."""
    try:
        import sentry_sdk

        if not sentry_sdk.is_initialized():
            return None
        with sentry_sdk.new_scope() as scope:
            tags = {
                "request_id": request_id,
                "user": user_id,
                "partition": partition,
                "step": step,
                "step_key": step_key,
                "attempt": attempt,
                "run_id": run_id,
                "job": job,
                "permanent": str(permanent).lower(),
            }
            for key, value in tags.items():
                if value is not None:
                    scope.set_tag(key, str(value))
            if user_id:
                scope.set_user({"id": user_id})
            context = failure_context(exc)
            if context:
                scope.set_context(*context)
            # A permanent error is the request's (an expired clip URL, a file that is not
            # a video): worth seeing, but not a bug of ours.
            scope.set_level("warning" if permanent else "error")
            return sentry_sdk.capture_exception(exc)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).warning(
            "could not report an exception to Sentry", exc_info=True
        )
        return None
