"""Intake: new request rows become partitions and runs; queued rows learn their place."""

from __future__ import annotations

from dagster import Definitions

from export_pipeline.defs.intake.queue import build_export_queue_sensor
from export_pipeline.defs.intake.sensors import build_export_requests_sensor
from export_pipeline.defs.settings import Settings


def intake_definitions(settings: Settings) -> Definitions:
    intake = settings.intake
    return Definitions(
        sensors=[
            build_export_requests_sensor(
                intake.batch_size,
                intake.interval_s,
                daily_limit=intake.daily_limit,
                max_duration_s=settings.downloads.max_total_duration_s,
                wait_s=intake.wait_s,
            ),
            build_export_queue_sensor(intake.interval_s),
        ]
    )
