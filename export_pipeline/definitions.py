"""The Dagster entry point: `export_pipeline.definitions:defs` (see workspace.yaml).

request row -> `export_requests_sensor` -> dynamic partition `exp-<id>` -> run of
`export_video_job`: downloaded_clips -> encoded_video -> published_video.
Configuration comes from environment variables through `Settings`; the code path is the
same for the embedded default and production, only the resources' values differ.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import (
    AssetSelection,
    Backoff,
    Definitions,
    EnvVar,
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
from export_pipeline.defs.intake.partitions import export_partitions, partition_tags
from export_pipeline.defs.intake.queue import build_export_queue_sensor
from export_pipeline.defs.intake.sensors import JOB_NAME, build_export_requests_sensor
from export_pipeline.defs.intake.supervision import (
    build_export_cancel_sensor,
    build_export_canceled_run_sensor,
    build_export_failure_sensor,
    build_export_sweeper_sensor,
)
from export_pipeline.defs.notify import (
    build_export_expiry_reminder_sensor,
    build_export_webhook_sensor,
)
from export_pipeline.defs.notify.alerts import build_export_alerts_sensor
from export_pipeline.defs.notify.channels import PagerDutyEvents, SlackAlerts
from export_pipeline.defs.observability import json_console_logger
from export_pipeline.defs.operations import build_export_metrics, build_retention_defs
from export_pipeline.defs.resources import AppDatabase, ClipDownloads, MediaTools, StorageResource
from export_pipeline.defs.settings import Settings
from export_pipeline.media.system import available_cpus
from export_pipeline.observability.errors import init_error_tracking
from export_pipeline.observability.logs import configure_logging


def build_io_manager(settings: Settings) -> dict:
    """Where Dagster keeps what steps hand each other (which segments to render: small
    values; the media itself goes through our storage). Dagster's default, files under
    $DAGSTER_HOME, serves the steps of one machine; with S3 storage they go to the same
    bucket (dagster-aws), so steps on other machines (docker, k8s executors) and the
    re-execution of a run elsewhere read them too."""
    if settings.storage_backend != "s3":
        return {}
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    # Beside the pipeline's objects, not among them (quota, retention and the app's keys
    # are the pipeline's; these are Dagster's, like its step logs under dagster/).
    return {
        "io_manager": S3PickleIOManager(
            s3_resource=s3, s3_bucket=settings.s3_bucket or "", s3_prefix="dagster/io"
        )
    }


def build_resources(settings: Settings) -> dict:
    return {
        **build_io_manager(settings),
        "app_db": AppDatabase(url=settings.db_url, heartbeat_s=settings.heartbeat_s),
        "storage": StorageResource(
            backend=settings.storage_backend,
            local_root=str(settings.local_storage_root),
            s3_bucket=settings.s3_bucket,
            s3_prefix=settings.s3_prefix,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            url_expiry_seconds=settings.url_expiry_seconds,
            quota_bytes=settings.storage_quota_bytes,
        ),
        "media": MediaTools(
            ffmpeg=settings.ffmpeg,
            ffprobe=settings.ffprobe,
            x264_preset=settings.x264_preset,
            max_fps=settings.max_fps,
            segment_workers=settings.segment_workers,
            max_segment_s=settings.segment_max_s,
            stream_sources_mb=settings.stream_sources_mb,
            segments_per_step=settings.segments_in_a_step,
            loudness_lufs=settings.loudness_lufs,
            work_dir=str(settings.work_dir) if settings.work_dir else None,
            ffmpeg_timeout_s=settings.ffmpeg_timeout_s,
            memory_mb=settings.ffmpeg_memory_mb,
            cpu_s=settings.ffmpeg_cpu_s,
            max_input_side=settings.max_input_side,
            max_input_pixels=settings.max_input_pixels,
        ),
        "downloads": ClipDownloads(
            concurrency=settings.download_concurrency,
            max_clip_bytes=settings.max_clip_bytes,
            max_total_duration_s=settings.max_total_duration_s,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            deadline_s=settings.download_deadline_s,
            min_kbps=settings.min_download_kbps,
            min_kbps_grace_s=settings.min_download_grace_s,
            max_request_bytes=settings.max_request_bytes,
            allow_http=settings.allow_http,
            allow_private_hosts=settings.allow_private_hosts,
            allowed_hosts=list(settings.allowed_hosts),
            private_networks=list(settings.private_networks),
        ),
    }


def _secret(name: str, value: str):
    """A secret from the process environment as an `EnvVar`, so the Dagster UI shows the
    variable's name, not its value; a value given otherwise (tests) as it is."""
    return EnvVar(name) if os.environ.get(name) == value else value


def build_alert_resources(settings: Settings) -> dict:
    """The configured alert channels (README, "Alerts, error tracking, logs")."""
    resources: dict = {}
    if "alert_slack" in settings.alert_channels:
        resources["alert_slack"] = SlackAlerts(
            token=_secret("EXPORT_SLACK_BOT_TOKEN", settings.slack_bot_token or ""),
            channel=settings.slack_channel or "",
            api_url=settings.slack_api_url,
        )
    if "alert_pagerduty" in settings.alert_channels:
        resources["alert_pagerduty"] = PagerDutyEvents(
            routing_key=_secret(
                "EXPORT_PAGERDUTY_ROUTING_KEY", settings.pagerduty_routing_key or ""
            ),
            url=settings.pagerduty_url,
        )
    return resources


EXECUTORS = ("in_process", "multiprocess", "docker", "k8s")


def build_executor(settings: Settings) -> ExecutorDefinition:
    """Where a run's steps run (`EXPORT_EXECUTOR`), the segments of an export above all:
    in the run's own process, one after another (the default: nothing to start, the
    fastest for short exports); in processes of their own on the run's machine
    (`multiprocess`, `EXPORT_MAX_CONCURRENT_STEPS` at once, default one per CPU); or across
    machines, a container per step (`docker`, dagster-docker) or a Kubernetes job per step
    (`k8s`, dagster-k8s), configured by the YAML file `EXPORT_EXECUTOR_CONFIG` (examples
    in docker/). Dagster's own executors: no scheduler of ours."""
    name = settings.executor
    limit = settings.max_concurrent_steps
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": limit or available_cpus()}, name="multiprocess"
        )
    config = {}
    if settings.executor_config:
        config = yaml.safe_load(Path(settings.executor_config).read_text()) or {}
    if limit:
        config["max_concurrent"] = limit
    if name == "docker":
        from dagster_docker import docker_executor

        return docker_executor.configured(config, name="docker")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(config, name="k8s")
    raise ValueError(f"EXPORT_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")


def json_logging_run_config(settings: Settings) -> dict:
    """With `EXPORT_LOG_FORMAT=json`, the run config that switches our jobs' console logger
    (Definitions(loggers=...)) on; empty otherwise."""
    if settings.log_format != "json":
        return {}
    return {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


def build_definitions(settings: Settings) -> Definitions:
    # 3 retries, 40 s base, exponential ((2^n - 1) x 40 s): waits of about 40 s, 2 min and
    # 4.7 min, the closest Dagster's backoff gets to the product doc's 30 s / 2 min / 5 min.
    retry = RetryPolicy(
        max_retries=settings.max_retries,
        delay=settings.retry_delay_s,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS if settings.retry_delay_s >= 5 else None,
    )
    # Dagster instantiates a job's own loggers only when the run config names them (else it
    # falls back to its prose console logger): the JSON one is named in every default.
    log_config = json_logging_run_config(settings)
    assets = [
        build_downloaded_clips(retry),
        build_encoded_video(retry),
        build_published_video(retry, settings.retention_days),
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
            tags_for_partition_key_fn=partition_tags(settings.db_url),
        ),
        executor_def=build_executor(settings),
        description="Export one request: download clips, encode, publish.",
    )
    sensors = [
        build_export_requests_sensor(
            settings.sensor_batch_size,
            settings.sensor_interval_s,
            daily_limit=settings.daily_export_limit,
            max_duration_s=settings.max_total_duration_s,
        ),
        build_export_failure_sensor(job),
        build_export_canceled_run_sensor(job),
        build_export_cancel_sensor(settings.sensor_interval_s),
        build_export_queue_sensor(settings.sensor_interval_s),
        build_export_sweeper_sensor(settings.stall_timeout_s, settings.sweeper_interval_s),
    ]
    if settings.webhook_url:
        sensors.append(
            build_export_webhook_sensor(
                settings.webhook_url,
                settings.webhook_secret or "",
                max_attempts=settings.webhook_max_attempts,
                backoff_base_s=settings.webhook_backoff_s,
                backoff_max_s=settings.webhook_max_backoff_s,
                timeout_s=settings.webhook_timeout_s,
                interval_s=settings.webhook_interval_s,
            )
        )
        # Retention's `expiring` reminder goes the same way (issue 14).
        sensors.append(
            build_export_expiry_reminder_sensor(
                settings.webhook_url,
                settings.webhook_secret or "",
                remind_days=settings.expiry_reminder_days,
                timeout_s=settings.webhook_timeout_s,
            )
        )
    # Operations: KPIs (hourly, with checks against the product doc's targets), retention
    # of old exports and of scratch files (daily).
    metrics = build_export_metrics(run_config=log_config)
    retention = build_retention_defs(
        settings.retention_days, settings.temp_max_age_hours, run_config=log_config
    )
    jobs = [job, *metrics["jobs"], *retention["jobs"]]
    # Alerts to a person: only with a channel configured (then running by default).
    if settings.alert_channels:
        sensors.append(
            build_export_alerts_sensor(
                settings.alert_channels,
                [j.name for j in jobs],
                webserver_url=settings.dagster_webserver_url,
                interval_s=settings.alert_interval_s,
            )
        )
    # EXPORT_LOG_FORMAT=json: the run workers' console logs, one JSON object per line.
    loggers = {"console": json_console_logger} if settings.log_format == "json" else {}
    return Definitions(
        assets=[*assets, *metrics["assets"]],
        asset_checks=metrics["asset_checks"],
        jobs=jobs,
        schedules=[*metrics["schedules"], *retention["schedules"]],
        sensors=sensors,
        resources={**build_resources(settings), **build_alert_resources(settings)},
        loggers=loggers,
    )


def start_observability(settings: Settings) -> None:
    """Our modules' log format and Sentry, in every process that loads the definitions:
    the code server, the daemon's sensor evaluations, each run worker."""
    configure_logging(settings.log_format)
    init_error_tracking(
        settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=settings.sentry_release,
    )


SETTINGS = Settings.from_env()
start_observability(SETTINGS)
defs = build_definitions(SETTINGS)
