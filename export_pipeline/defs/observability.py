"""Dagster's console logger of our jobs as JSON lines (`EXPORT_LOG_FORMAT=json`)."""

from __future__ import annotations

import logging
import sys

from dagster import Field, logger

from export_pipeline.observability.logs import JsonFormatter


@logger(
    {
        "log_level": Field(str, is_required=False, default_value="DEBUG"),
        "name": Field(str, is_required=False, default_value="dagster"),
    },
    description="Dagster's console logger, as one JSON object per line (EXPORT_LOG_FORMAT=json).",
)
def json_console_logger(init_context) -> logging.Logger:
    config = init_context.logger_config
    log = logging.Logger(config["name"], level=logging.getLevelName(config["log_level"].upper()))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    return log


def log_run_config(log_format: str) -> dict:
    """With `EXPORT_LOG_FORMAT=json`, the run config that switches our jobs' console logger
    on (Dagster builds a job's own loggers only when the run config names them); empty
    otherwise."""
    if log_format != "json":
        return {}
    return {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


def loggers(log_format: str) -> dict:
    """The run workers' console logger: one JSON object per line with `json`."""
    return {"console": json_console_logger} if log_format == "json" else {}
