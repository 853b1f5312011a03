"""Run the production intake path once, in this process, without the daemon.

Used by `export-pipeline demo` and by tests: it evaluates the real
`export_requests_sensor`, applies its partition requests to the instance and executes
the requested runs in process. Runs land in the instance like any other, so they show
in the Dagster UI (`dagster dev`) afterwards.
"""

from __future__ import annotations

from dagster import (
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    SensorResult,
    build_sensor_context,
)

from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.defs.intake.sensors import JOB_NAME


def evaluate_intake(
    instance: DagsterInstance, defs: Definitions, cursor: str | None
) -> SensorResult:
    """One tick of `export_requests_sensor`; partitions it asks for are added."""
    sensor_def = defs.resolve_sensor_def("export_requests_sensor")
    # The sensor's own resources (not the run's I/O manager, which only steps use).
    resources = {k: v for k, v in defs.resources.items() if k != "io_manager"}
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=resources
    )
    result = sensor_def(context)
    if not isinstance(result, SensorResult):
        return SensorResult(run_requests=[], cursor=cursor)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(export_partitions.name, list(request.partition_keys))
    return result


def run_requested(
    instance: DagsterInstance, defs: Definitions, result: SensorResult, log_level: str = "INFO"
) -> list[ExecuteInProcessResult]:
    """Execute the runs a tick requested, one after another (all events are stored;
    `log_level` only filters what the console shows)."""
    job = defs.resolve_job_def(JOB_NAME)
    console = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return [
        job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            run_config=console,
            raise_on_error=False,
        )
        for request in result.run_requests or []
    ]
