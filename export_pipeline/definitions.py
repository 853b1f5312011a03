"""The Dagster entry point: `export_pipeline.definitions:defs` (see workspace.yaml).

request row -> intake sensor -> dynamic partition `exp-<id>` -> run of `export_video_job`:
downloaded_clips -> encoded_video -> published_video; operations and notifications beside.
Each domain of `defs/` returns its own `Definitions`; this module merges them with the
resources the settings make. The embedded default and production run the same code: only
the settings (environment variables) differ.
"""

from __future__ import annotations

from dagster import Definitions

from export_pipeline.defs.export.definitions import export_definitions
from export_pipeline.defs.intake.definitions import intake_definitions
from export_pipeline.defs.notify.definitions import notify_definitions
from export_pipeline.defs.observability import loggers
from export_pipeline.defs.operations.definitions import operations_definitions
from export_pipeline.defs.settings import Settings
from export_pipeline.observability.errors import init_error_tracking
from export_pipeline.observability.logs import configure_logging

DOMAINS = (intake_definitions, export_definitions, operations_definitions, notify_definitions)


def build_definitions(settings: Settings) -> Definitions:
    shared = Definitions(
        resources=settings.resources(), loggers=loggers(settings.observability.log_format)
    )
    return Definitions.merge(*(domain(settings) for domain in DOMAINS), shared)


def start_observability(settings: Settings) -> None:
    """Our modules' log format and Sentry, in every process that loads the definitions:
    the code server, the daemon's sensor evaluations, each run worker."""
    observability = settings.observability
    configure_logging(observability.log_format)
    init_error_tracking(
        observability.sentry_dsn,
        environment=observability.sentry_environment,
        release=observability.sentry_release,
    )


SETTINGS = Settings.from_env()
start_observability(SETTINGS)
defs = build_definitions(SETTINGS)
