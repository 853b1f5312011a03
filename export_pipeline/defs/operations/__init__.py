"""Operations: export KPIs (`metrics`) and retention of videos and scratch (`retention`)."""

from export_pipeline.defs.operations.metrics import (
    CAUSES,
    build_export_metrics,
    classify_failure,
    compute_metrics,
    metrics_table,
)
from export_pipeline.defs.operations.retention import (
    build_retention_defs,
    sweep_expired,
    sweep_temp,
)

__all__ = [
    "CAUSES",
    "build_export_metrics",
    "build_retention_defs",
    "classify_failure",
    "compute_metrics",
    "metrics_table",
    "sweep_expired",
    "sweep_temp",
]
