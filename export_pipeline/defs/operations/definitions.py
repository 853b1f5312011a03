"""Operations: the export KPIs (hourly, with checks against the product doc's targets) and
retention of old exports and of scratch files (daily)."""

from __future__ import annotations

from dagster import Definitions

from export_pipeline.defs.observability import log_run_config
from export_pipeline.defs.operations.metrics import build_export_metrics
from export_pipeline.defs.operations.retention import build_retention_defs
from export_pipeline.defs.settings import Settings


def operations_definitions(settings: Settings) -> Definitions:
    log_config = log_run_config(settings.observability.log_format)
    return Definitions.merge(
        build_export_metrics(run_config=log_config),
        build_retention_defs(
            settings.retention.days, settings.retention.temp_max_age_hours, run_config=log_config
        ),
    )
