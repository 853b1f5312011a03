"""Operations: export KPIs (`metrics`) and retention of videos and scratch (`retention`)."""

from export_pipeline.defs.operations.metrics import (
    build_export_metrics,
    metrics_table,
)
from export_pipeline.defs.operations.retention import (
    build_retention_defs,
    sweep_expired,
    sweep_temp,
)

__all__ = [
    "build_export_metrics",
    "build_retention_defs",
    "metrics_table",
    "sweep_expired",
    "sweep_temp",
]
