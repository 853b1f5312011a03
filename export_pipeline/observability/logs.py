"""Logs a forwarder can read: one JSON object per line (`EXPORT_LOG_FORMAT=json`).

`JsonFormatter` is a `logging.Formatter`; each line holds `timestamp` (ISO 8601, UTC),
`level`, `logger`, `message`, and when known `run_id`, `job`, `step`, `partition`,
`request_id`, `attempt`, `event` (Dagster's event type) and `exception` (the traceback).
Run and step logs carry Dagster's metadata (`dagster_meta`: run, job, step, the run's tags
and so its partition); our own code adds the request and attempt while a step runs
(`step_log_context`). Messages pass through `scrub_text`: no signed URL reaches the logs.

Where it is used (README, "Alerts, error tracking, logs"):
- run workers: `json_console_logger` replaces Dagster's prose console logger of our jobs
  (`Definitions(loggers=...)`), and dagster.yaml's `python_logs.dagster_handler_config`
  may send the same records to any handler with this formatter;
- our own modules (`export_pipeline.*`, plain `logging`): `configure_logging("json")`;
- the daemon and the code server: Dagster's own `--log-format json`.
The default (`text`) changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from export_pipeline.observability.scrub import scrub_text

LOG_FORMATS = ("text", "json")
PACKAGE_LOGGER = "export_pipeline"
_PARTITION_TAG = "dagster/partition"

# What our code knows about the step it runs in (set by tracking.export_step).
_step: ContextVar[dict[str, Any] | None] = ContextVar("export_step_log_context", default=None)


@contextlib.contextmanager
def step_log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (request_id, partition, step, attempt) to every JSON line logged in
    this context (the thread or task running the step)."""
    token = _step.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _step.reset(token)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        message = meta.get("orig_message") if meta.get("orig_message") is not None else None
        if message is None:
            message = record.getMessage()
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub_text(str(message)),
        }
        if meta:
            tags = meta.get("job_tags") or {}
            line.update(
                {
                    "run_id": meta.get("run_id"),
                    "job": meta.get("job_name"),
                    "step": meta.get("step_key"),
                    "partition": tags.get(_PARTITION_TAG),
                    "event": getattr(event, "event_type_value", None),
                }
            )
        for key, value in (_step.get() or {}).items():
            if line.get(key) is None:
                line[key] = value
        if record.exc_info:
            line["exception"] = scrub_text(self.formatException(record.exc_info))
        elif record.stack_info:
            line["stack"] = record.stack_info
        elif (error := _event_error(event)) is not None:
            line["exception"] = scrub_text(error)
        return json.dumps(
            {k: v for k, v in line.items() if v is not None},
            ensure_ascii=False,
            default=str,
            separators=(",", ":"),
        )


def _event_error(event: Any) -> str | None:
    """The error of a step-failure event, as Dagster recorded it (message and stack)."""
    data = getattr(event, "event_specific_data", None)
    error = getattr(data, "error", None)
    if error is None:
        return None
    try:
        return error.to_string()
    except Exception:  # noqa: BLE001
        return "".join(traceback.format_exception_only(type(error), error))


def configure_logging(log_format: str, stream: Any = None) -> None:
    """Our own modules' loggers (`export_pipeline.*`): JSON lines on stderr for `json`;
    `text` leaves Python's logging as it is. Idempotent."""
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"EXPORT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}"
        )
    package = logging.getLogger(PACKAGE_LOGGER)
    for handler in list(package.handlers):
        if getattr(handler, "_export_json", False):
            package.removeHandler(handler)
    if log_format == "json":
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._export_json = True  # type: ignore[attr-defined]
        package.addHandler(handler)
        package.propagate = False  # one line per record, not one more in prose from root
        if package.level == logging.NOTSET:
            package.setLevel(logging.INFO)
    else:
        package.propagate = True
