"""Configuration: one place that turns environment variables into typed settings.

Nothing reads the environment at import time; `Settings.from_env()` is called by the
Dagster entry point (`definitions.py`) and by the CLI. Every variable is documented in
README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from export_pipeline.media.encoding import DEFAULT_PRESET
from export_pipeline.media.loudness import DEFAULT_LOUDNESS_LUFS


def _auto_int(value: str) -> int | None:
    return None if value.strip().lower() in ("", "auto", "0") else int(value)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be configured with; defaults are the embedded world."""

    home: Path
    db_url: str
    storage_backend: str = "local"
    storage_root: Path | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    url_expiry_seconds: int = 7 * 24 * 3600
    work_dir: Path | None = None
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    x264_preset: str = DEFAULT_PRESET
    max_fps: int = 60
    segment_workers: int = 0
    segment_max_s: float = 10.0
    stream_sources_mb: float = 256
    executor: str = "in_process"
    max_concurrent_steps: int = 0
    segments_per_step: int | None = None  # None: all in one step in process, else one each
    executor_config: str | None = None
    loudness_lufs: float = DEFAULT_LOUDNESS_LUFS
    download_concurrency: int = 4
    max_clip_bytes: int = 2 * 1024**3
    max_total_duration_s: float = 600.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    download_deadline_s: float = 600.0
    min_download_kbps: float = 32.0
    min_download_grace_s: float = 10.0
    max_request_bytes: int = 8192 * 1024**2
    allow_http: bool = False
    allow_private_hosts: bool = False
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    private_networks: tuple[str, ...] = field(default_factory=tuple)
    ffmpeg_timeout_s: float = 3600.0
    ffmpeg_memory_mb: int = 3072
    ffmpeg_cpu_s: int = 7200
    max_input_side: int = 8192
    max_input_pixels: int = 8192 * 4320
    max_retries: int = 3
    retry_delay_s: float = 40.0
    stall_timeout_s: float = 900.0
    sweeper_interval_s: int = 30
    heartbeat_s: float = 15.0
    storage_quota_bytes: int = 0
    retention_days: int = 7
    expiry_reminder_days: float = 2.0
    temp_max_age_hours: float = 24.0
    daily_export_limit: int = 5
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 30.0
    webhook_max_backoff_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    webhook_interval_s: int = 10
    # Alerts (notify/alerts.py): Slack and/or PagerDuty Events v2, each on when configured.
    slack_bot_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    pagerduty_routing_key: str | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    alert_interval_s: int = 30
    dagster_webserver_url: str | None = None
    # Error tracking (Sentry, on when SENTRY_DSN is set) and the log format.
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    sentry_release: str | None = None
    log_format: str = "text"
    sensor_batch_size: int = 50
    sensor_interval_s: int = 5

    @property
    def segments_in_a_step(self) -> int:
        """Segments one segment step renders (0: all of them). In process, steps run one
        after another, so one step renders them all, two FFmpeg at once as before the
        fan-out (the fastest on one machine); under any other executor, one each, so the
        executor spreads them."""
        if self.segments_per_step is not None:
            return max(1, self.segments_per_step)
        return 0 if self.executor == "in_process" else 1

    @property
    def alert_channels(self) -> tuple[str, ...]:
        """The configured alert channels' resource keys (Slack needs a token and a channel)."""
        channels = []
        if self.slack_bot_token and self.slack_channel:
            channels.append("alert_slack")
        if self.pagerduty_routing_key:
            channels.append("alert_pagerduty")
        return tuple(channels)

    @property
    def local_storage_root(self) -> Path:
        return self.storage_root or self.home / "storage"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("EXPORT_PIPELINE_HOME") or Path.cwd() / ".data").absolute()

        def get(name: str, default: str) -> str:
            return env.get(name) or default

        def opt(name: str) -> str | None:
            return env.get(name) or None

        return cls(
            home=home,
            db_url=get("EXPORT_DB_URL", f"sqlite:///{home / 'app.db'}"),
            storage_backend=get("EXPORT_STORAGE_BACKEND", "local").lower(),
            storage_root=Path(env["EXPORT_STORAGE_ROOT"])
            if env.get("EXPORT_STORAGE_ROOT")
            else None,
            s3_bucket=opt("EXPORT_S3_BUCKET"),
            s3_prefix=get("EXPORT_S3_PREFIX", ""),
            s3_endpoint_url=opt("EXPORT_S3_ENDPOINT_URL"),
            s3_region=opt("EXPORT_S3_REGION") or opt("AWS_REGION"),
            url_expiry_seconds=int(get("EXPORT_URL_EXPIRY_SECONDS", str(7 * 24 * 3600))),
            work_dir=Path(env["EXPORT_WORK_DIR"]) if env.get("EXPORT_WORK_DIR") else None,
            ffmpeg=get("EXPORT_FFMPEG", "ffmpeg"),
            ffprobe=get("EXPORT_FFPROBE", "ffprobe"),
            x264_preset=get("EXPORT_X264_PRESET", DEFAULT_PRESET),
            max_fps=int(get("EXPORT_MAX_FPS", "60")),
            segment_workers=int(get("EXPORT_SEGMENT_WORKERS", "0")),
            segment_max_s=float(get("EXPORT_SEGMENT_MAX_S", "10")),
            stream_sources_mb=float(get("EXPORT_STREAM_SOURCES_MB", "256")),
            executor=get("EXPORT_EXECUTOR", "in_process").lower().replace("-", "_"),
            max_concurrent_steps=int(get("EXPORT_MAX_CONCURRENT_STEPS", "0")),
            segments_per_step=_auto_int(get("EXPORT_SEGMENTS_PER_STEP", "auto")),
            executor_config=opt("EXPORT_EXECUTOR_CONFIG"),
            loudness_lufs=float(get("EXPORT_LOUDNESS_LUFS", str(DEFAULT_LOUDNESS_LUFS))),
            download_concurrency=int(get("EXPORT_DOWNLOAD_CONCURRENCY", "4")),
            max_clip_bytes=int(get("EXPORT_MAX_CLIP_MB", "2048")) * 1024**2,
            max_total_duration_s=float(get("EXPORT_MAX_DURATION_S", "600")),
            connect_timeout_s=float(get("EXPORT_CONNECT_TIMEOUT_S", "10")),
            read_timeout_s=float(get("EXPORT_READ_TIMEOUT_S", "60")),
            download_deadline_s=float(get("EXPORT_DOWNLOAD_DEADLINE_S", "600")),
            min_download_kbps=float(get("EXPORT_MIN_DOWNLOAD_KBPS", "32")),
            min_download_grace_s=float(get("EXPORT_MIN_DOWNLOAD_GRACE_S", "10")),
            max_request_bytes=int(float(get("EXPORT_MAX_REQUEST_MB", "8192")) * 1024**2),
            allow_http=_bool(get("EXPORT_ALLOW_HTTP", "false")),
            allow_private_hosts=_bool(get("EXPORT_ALLOW_PRIVATE_HOSTS", "false")),
            allowed_hosts=_list(get("EXPORT_ALLOWED_HOSTS", "")),
            private_networks=_list(get("EXPORT_ALLOWED_PRIVATE_NETWORKS", "")),
            ffmpeg_timeout_s=float(get("EXPORT_FFMPEG_TIMEOUT_S", "3600")),
            ffmpeg_memory_mb=int(get("EXPORT_FFMPEG_MEMORY_MB", "3072")),
            ffmpeg_cpu_s=int(get("EXPORT_FFMPEG_CPU_S", "7200")),
            max_input_side=int(get("EXPORT_MAX_INPUT_SIDE", "8192")),
            max_input_pixels=int(get("EXPORT_MAX_INPUT_PIXELS", str(8192 * 4320))),
            max_retries=int(get("EXPORT_MAX_RETRIES", "3")),
            retry_delay_s=float(get("EXPORT_RETRY_DELAY_S", "40")),
            stall_timeout_s=float(get("EXPORT_STALL_TIMEOUT_S", "900")),
            sweeper_interval_s=int(get("EXPORT_SWEEPER_INTERVAL_S", "30")),
            heartbeat_s=float(get("EXPORT_HEARTBEAT_S", "15")),
            storage_quota_bytes=int(float(get("EXPORT_STORAGE_QUOTA_MB", "0")) * 1024**2),
            retention_days=int(get("EXPORT_RETENTION_DAYS", "7")),
            expiry_reminder_days=float(get("EXPORT_EXPIRY_REMINDER_DAYS", "2")),
            temp_max_age_hours=float(get("EXPORT_TEMP_MAX_AGE_HOURS", "24")),
            daily_export_limit=int(get("EXPORT_DAILY_LIMIT", "5")),
            webhook_url=opt("EXPORT_WEBHOOK_URL"),
            webhook_secret=opt("EXPORT_WEBHOOK_SECRET"),
            webhook_max_attempts=int(get("EXPORT_WEBHOOK_MAX_ATTEMPTS", "8")),
            webhook_backoff_s=float(get("EXPORT_WEBHOOK_BACKOFF_S", "30")),
            webhook_max_backoff_s=float(get("EXPORT_WEBHOOK_MAX_BACKOFF_S", "3600")),
            webhook_timeout_s=float(get("EXPORT_WEBHOOK_TIMEOUT_S", "10")),
            webhook_interval_s=int(get("EXPORT_WEBHOOK_INTERVAL_S", "10")),
            slack_bot_token=opt("EXPORT_SLACK_BOT_TOKEN"),
            slack_channel=opt("EXPORT_SLACK_CHANNEL"),
            slack_api_url=get("EXPORT_SLACK_API_URL", "https://slack.com/api/"),
            pagerduty_routing_key=opt("EXPORT_PAGERDUTY_ROUTING_KEY"),
            pagerduty_url=get("EXPORT_PAGERDUTY_URL", "https://events.pagerduty.com/v2/enqueue"),
            alert_interval_s=int(get("EXPORT_ALERT_INTERVAL_S", "30")),
            dagster_webserver_url=opt("EXPORT_DAGSTER_WEBSERVER_URL"),
            sentry_dsn=opt("SENTRY_DSN"),
            sentry_environment=opt("SENTRY_ENVIRONMENT"),
            sentry_release=opt("SENTRY_RELEASE"),
            log_format=get("EXPORT_LOG_FORMAT", "text").strip().lower(),
            sensor_batch_size=int(get("EXPORT_SENSOR_BATCH_SIZE", "50")),
            sensor_interval_s=int(get("EXPORT_SENSOR_INTERVAL_S", "5")),
        )
