"""What operators and their tools see: error events (Sentry), JSON logs, secret scrubbing."""

from export_pipeline.observability.errors import (
    before_send,
    init_error_tracking,
    report_step_exception,
)
from export_pipeline.observability.logs import (
    JsonFormatter,
    configure_logging,
    json_console_logger,
    step_log_context,
)
from export_pipeline.observability.scrub import scrub, scrub_text

__all__ = [
    "JsonFormatter",
    "before_send",
    "configure_logging",
    "init_error_tracking",
    "json_console_logger",
    "report_step_exception",
    "scrub",
    "scrub_text",
    "step_log_context",
]
