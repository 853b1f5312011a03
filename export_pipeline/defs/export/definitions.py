"""The export: one job over downloaded_clips -> encoded_video -> published_video per
request partition, run by the executor the settings name, with retries; and the sensors
that keep request rows and runs in agreement (`supervision`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster import (
    AssetSelection,
    Backoff,
    Definitions,
    ExecutorDefinition,
    Jitter,
    PartitionedConfig,
    RetryPolicy,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)

from export_pipeline.defs.export.clips import build_downloaded_clips
from export_pipeline.defs.export.encode import build_encoded_video
from export_pipeline.defs.export.publish import build_published_video
from export_pipeline.defs.export.supervision import (
    build_export_cancel_sensor,
    build_export_canceled_run_sensor,
    build_export_failure_sensor,
    build_export_sweeper_sensor,
)
from export_pipeline.defs.intake.partitions import export_partitions, partition_tags
from export_pipeline.defs.intake.sensors import JOB_NAME
from export_pipeline.defs.observability import log_run_config
from export_pipeline.defs.settings import EXECUTORS, Runs, Settings
from export_pipeline.media.system import available_cpus


def retry_policy(runs: Runs) -> RetryPolicy:
    """3 retries, 40 s base, exponential ((2^n - 1) x 40 s): waits of about 40 s, 2 min and
    4.7 min, the closest Dagster's backoff gets to the product doc's 30 s / 2 min / 5 min."""
    return RetryPolicy(
        max_retries=runs.max_retries,
        delay=runs.retry_delay_s,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS if runs.retry_delay_s >= 5 else None,
    )


def build_executor(runs: Runs) -> ExecutorDefinition:
    """Where a run's steps run (`EXPORT_EXECUTOR`), the segments of an export above all:
    in the run's own process, one after another (the default: nothing to start, the
    fastest for short exports); in processes of their own on the run's machine
    (`multiprocess`, `EXPORT_MAX_CONCURRENT_STEPS` at once, default one per CPU); or across
    machines, a container per step (`docker`, dagster-docker) or a Kubernetes job per step
    (`k8s`, dagster-k8s), configured by the YAML file `EXPORT_EXECUTOR_CONFIG` (examples
    in docker/). Dagster's own executors: no scheduler of ours."""
    name, limit = runs.executor, runs.max_concurrent_steps
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": limit or available_cpus()}, name="multiprocess"
        )
    config = {}
    if runs.executor_config:
        config = yaml.safe_load(Path(runs.executor_config).read_text()) or {}
    if limit:
        config["max_concurrent"] = limit
    if name == "docker":
        from dagster_docker import docker_executor

        return docker_executor.configured(config, name="docker")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(config, name="k8s")
    raise ValueError(f"EXPORT_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")


def export_definitions(settings: Settings) -> Definitions:
    retry = retry_policy(settings.runs)
    log_config = log_run_config(settings.observability.log_format)
    assets = [
        build_downloaded_clips(retry),
        build_encoded_video(retry),
        build_published_video(retry, settings.retention.days),
    ]
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.groups("export"),
        partitions_def=export_partitions,
        # Runs carry the request's export/* tags however they are launched, so backfills
        # and launchpad runs also queue behind the per-user limit.
        config=PartitionedConfig(
            partitions_def=export_partitions,
            run_config_for_partition_key_fn=lambda _key: dict(log_config),
            tags_for_partition_key_fn=partition_tags(settings.app_db.url),
        ),
        executor_def=build_executor(settings.runs),
        description="Export one request: download clips, encode, publish.",
    )
    intake = settings.intake
    sensors = [
        build_export_failure_sensor(job),
        build_export_canceled_run_sensor(job),
        build_export_cancel_sensor(intake.interval_s),
        build_export_sweeper_sensor(intake.stall_timeout_s, intake.sweeper_interval_s),
    ]
    return Definitions(assets=assets, jobs=[job], sensors=sensors)
