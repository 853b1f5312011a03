"""Every setting of the pipeline, from the environment: the resources (`defs.resources`),
the alert channels (`defs.channels`) and the groups below, each field declared once with
its default, its variable and its meaning (`defs.config.setting`).

`Settings.from_env()` is called by the entry points (`definitions.py`, the CLI); nothing
reads the environment at import time. `declared()` lists every variable: README's
configuration table and docker/'s variable lists are checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

from dagster import Config
from pydantic import field_validator

from export_pipeline.defs.channels import CHANNELS, AlertChannel
from export_pipeline.defs.config import Declared, FromEnv, setting
from export_pipeline.defs.resources import AppDatabase, ClipDownloads, MediaTools, StorageResource
from export_pipeline.domain.request import DEFAULT_RETENTION_DAYS
from export_pipeline.io.scratch import TEMP_MAX_AGE_HOURS

EXECUTORS = ("in_process", "multiprocess", "docker", "k8s")
LOG_FORMATS = ("text", "json")


class Home(FromEnv, Config):
    path: str = setting(
        ".data", "EXPORT_PIPELINE_HOME", "where the embedded world keeps its files (relative to "
        "the working directory)",
    )  # fmt: skip


class Runs(FromEnv, Config):
    """How a run of an export executes and retries."""

    executor: str = setting(
        "in_process", "EXPORT_EXECUTOR", "where a run's steps run, the segments of an export "
        "above all: `in_process` (in the run's process, one after another), `multiprocess` "
        "(a process per step on the run's machine), `docker` (dagster-docker: a container per "
        "step) or `k8s` (dagster-k8s: a Kubernetes job per step)",
    )  # fmt: skip
    max_concurrent_steps: int = setting(
        0, "EXPORT_MAX_CONCURRENT_STEPS", "steps of one run at once; 0: the machine's CPUs "
        "(`multiprocess`) or the executor config's `max_concurrent` (`docker`, `k8s`)",
    )  # fmt: skip
    executor_config: str | None = setting(
        None, "EXPORT_EXECUTOR_CONFIG", "a YAML file with the `docker` or `k8s` executor's own "
        "config (`docker/executor-docker.yaml`, `docker/executor-k8s.yaml`)",
    )  # fmt: skip
    max_retries: int = setting(3, "EXPORT_MAX_RETRIES", "retries per step after the first attempt")
    retry_delay_s: float = setting(
        40.0, "EXPORT_RETRY_DELAY_S", "base delay; exponential: about 40 s, 2 min, 4.7 min (the "
        "product doc's 30 s / 2 min / 5 min, as close as Dagster's backoff gets); an HTTP "
        "`Retry-After` wins",
    )  # fmt: skip

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        return value.strip().lower().replace("-", "_")


class Intake(FromEnv, Config):
    """How request rows become runs, and how rows and runs are kept in agreement."""

    batch_size: int = setting(50, "EXPORT_SENSOR_BATCH_SIZE", "rows the sensor takes per tick")
    interval_s: int = setting(
        1, "EXPORT_SENSOR_INTERVAL_S", "intake sensors' minimum interval; the daemon looks at "
        "its sensors every 5 s at most, and 5 here made it skip some looks (ticks up to 10 s "
        "apart)",
    )  # fmt: skip
    wait_s: float = setting(
        3.5, "EXPORT_SENSOR_WAIT_S", "how long a tick that finds no new request keeps looking "
        "for one (every 0.1 s): a request inserted meanwhile is taken at once, not at the "
        "next tick 5 s later (0: no wait; keep below 5 s)",
    )  # fmt: skip
    daily_limit: int = setting(
        5, "EXPORT_DAILY_LIMIT", "exports per user per rolling 24 h; more are `rejected` "
        "(0: no limit)",
    )  # fmt: skip
    stall_timeout_s: float = setting(
        900.0, "EXPORT_STALL_TIMEOUT_S", "a row whose run sent no heartbeat for this long is "
        "handled by the sweeper (keep above the longest retry wait)",
    )  # fmt: skip
    sweeper_interval_s: int = setting(
        30, "EXPORT_SWEEPER_INTERVAL_S", "how often `export_sweeper_sensor` looks"
    )


class Retention(FromEnv, Config):
    """How long exports and scratch files are kept."""

    days: int = setting(
        DEFAULT_RETENTION_DAYS, "EXPORT_RETENTION_DAYS", "days a finished export is kept "
        "when its request has no `retention_days`: its `expires_at` is set from it on "
        "completion (a change applies to exports completed afterwards); `retention_job` "
        "(daily) deletes exports past their `expires_at` and marks them `expired`",
    )  # fmt: skip
    temp_max_age_hours: float = setting(
        TEMP_MAX_AGE_HOURS, "EXPORT_TEMP_MAX_AGE_HOURS", "`temp_sweep_job` (daily) removes "
        "scratch entries older than this",
    )  # fmt: skip


class Webhook(FromEnv, Config):
    """The completion webhook and the `expiring` reminder (on when url and secret are set)."""

    url: str | None = setting(
        None, "EXPORT_WEBHOOK_URL", "completion webhook target (with `EXPORT_WEBHOOK_SECRET`)"
    )
    secret: str | None = setting(
        None, "EXPORT_WEBHOOK_SECRET", "the webhook's HMAC secret", secret=True
    )
    max_attempts: int = setting(8, "EXPORT_WEBHOOK_MAX_ATTEMPTS", "webhook attempts per outcome")
    backoff_s: float = setting(
        30.0, "EXPORT_WEBHOOK_BACKOFF_S", "first wait between webhook attempts; doubles"
    )
    max_backoff_s: float = setting(
        3600.0, "EXPORT_WEBHOOK_MAX_BACKOFF_S", "longest wait between webhook attempts"
    )
    timeout_s: float = setting(10.0, "EXPORT_WEBHOOK_TIMEOUT_S", "webhook request timeout")
    interval_s: int = setting(10, "EXPORT_WEBHOOK_INTERVAL_S", "webhook sensor interval")
    reminder_days: float = setting(
        2.0, "EXPORT_EXPIRY_REMINDER_DAYS", "days before `expires_at` the `expiring` webhook "
        "event and the reminder email are sent (fractions allowed, e.g. `0.5`)",
    )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.secret)


class Email(FromEnv, Config):
    """Emails to a request's `notify_email`: the outcome and the expiry reminder (on when a
    host is set; the reminder's time is `Webhook.reminder_days`)."""

    host: str | None = setting(
        None, "EXPORT_SMTP_HOST", "`smtp.example.com`: the SMTP server that sends the emails "
        "to `notify_email` (with `EXPORT_EMAIL_FROM`); unset: no email",
    )  # fmt: skip
    port: int | None = setting(
        None, "EXPORT_SMTP_PORT", "the SMTP server's port; unset: 587 (`starttls`), 465 "
        "(`tls`) or 25 (`none`)",
    )  # fmt: skip
    security: str = setting(
        "starttls", "EXPORT_SMTP_SECURITY", "`starttls` (a plain connection upgraded to TLS), "
        "`tls` (TLS from the start) or `none` (no login then: a password is never sent in "
        "clear); certificates are always verified",
    )  # fmt: skip
    username: str | None = setting(
        None, "EXPORT_SMTP_USERNAME", "the SMTP login's user name (unset: no login)"
    )
    password: str | None = setting(
        None, "EXPORT_SMTP_PASSWORD", "the SMTP login's password", secret=True
    )
    timeout_s: float = setting(
        10.0, "EXPORT_SMTP_TIMEOUT_S", "how long the SMTP server may take to connect or "
        "answer, at each step (then: retried later)",
    )  # fmt: skip
    ca_file: str | None = setting(
        None, "EXPORT_SMTP_CA_FILE", "a CA bundle (PEM) to verify the SMTP server's "
        "certificate with, e.g. an internal relay's; unset: the system's",
    )  # fmt: skip
    from_address: str | None = setting(
        None, "EXPORT_EMAIL_FROM", "`Video Exports <exports@example.com>`: who the emails "
        "are from (needed with `EXPORT_SMTP_HOST`)",
    )  # fmt: skip
    reply_to: str | None = setting(
        None, "EXPORT_EMAIL_REPLY_TO", "`support@example.com`: where the creator's replies "
        "go; unset: the From address",
    )  # fmt: skip
    templates_dir: str | None = setting(
        None, "EXPORT_EMAIL_TEMPLATES_DIR", "a directory of your own email templates, named "
        "like the package's (`completion`, `failure`, `expiring`; `.txt` and `.html`); "
        "files it lacks come from the package",
    )  # fmt: skip
    interval_s: int = setting(
        10, "EXPORT_EMAIL_INTERVAL_S", "how often `export_email_sensor` looks for finished "
        "exports to email",
    )  # fmt: skip

    @field_validator("security")
    @classmethod
    def _security(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def enabled(self) -> bool:
        return bool(self.host)


class Alerting(FromEnv, Config):
    """Where alerts link to and how often they look (the channels are `defs.channels`)."""

    interval_s: int = setting(
        30, "EXPORT_ALERT_INTERVAL_S", "how often `export_alerts_sensor` looks at checks and runs"
    )
    webserver_url: str | None = setting(
        None, "EXPORT_DAGSTER_WEBSERVER_URL", "`https://dagster.example.com`: the Dagster UI's "
        "address, for links in alerts (without it: ids only)",
    )  # fmt: skip


class Observability(FromEnv, Config):
    """Error tracking and the log format of every process that loads the definitions."""

    sentry_dsn: str | None = setting(
        None, "SENTRY_DSN", "Sentry project DSN: exceptions of steps and sensors are reported "
        "(scrubbed)",
    )  # fmt: skip
    sentry_environment: str | None = setting(
        None, "SENTRY_ENVIRONMENT", "Sentry's environment name"
    )
    sentry_release: str | None = setting(None, "SENTRY_RELEASE", "Sentry's release name")
    log_format: str = setting(
        "text", "EXPORT_LOG_FORMAT", "`json`: run workers' and our modules' logs as one JSON "
        "object per line",
    )  # fmt: skip

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        return value.strip().lower()


@dataclass(frozen=True)
class Settings:
    """All of it. Build with `from_env`; tests change parts with `replace`."""

    home: Path
    app_db: AppDatabase
    storage: StorageResource
    media: MediaTools
    downloads: ClipDownloads
    runs: Runs = field(default_factory=Runs)
    intake: Intake = field(default_factory=Intake)
    retention: Retention = field(default_factory=Retention)
    webhook: Webhook = field(default_factory=Webhook)
    email: Email = field(default_factory=Email)
    alerting: Alerting = field(default_factory=Alerting)
    channels: tuple[AlertChannel, ...] = ()  # the configured alert channels
    observability: Observability = field(default_factory=Observability)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        import os

        env = os.environ if environ is None else environ
        home = Path(Home.from_env(env).path).absolute()
        return cls(
            home=home,
            app_db=AppDatabase.from_env(
                env, **_default(env, "EXPORT_DB_URL", url=f"sqlite:///{home / 'app.db'}")
            ),
            storage=StorageResource.from_env(
                env, **_default(env, "EXPORT_STORAGE_ROOT", local_root=str(home / "storage"))
            ),
            media=MediaTools.from_env(
                env, **_default(env, "EXPORT_WORK_DIR", work_dir=str(home / "scratch"))
            ),
            downloads=ClipDownloads.from_env(env),
            runs=Runs.from_env(env),
            intake=Intake.from_env(env),
            retention=Retention.from_env(env),
            webhook=Webhook.from_env(env),
            email=Email.from_env(env),
            alerting=Alerting.from_env(env),
            channels=tuple(c for c in (k.from_env(env) for k in CHANNELS) if c.configured),
            observability=Observability.from_env(env),
        )

    def resources(self) -> dict[str, Any]:
        """The Dagster resources these settings make: the app database, storage, FFmpeg,
        downloads, the configured alert channels and, with S3 storage, the I/O manager."""
        return {
            **self._io_manager(),
            "app_db": self.app_db,
            "storage": self.storage,
            "media": self._media(),
            "downloads": self.downloads,
            **{channel.key: channel for channel in self.channels},
        }

    def _media(self) -> MediaTools:
        """`segments_per_step` auto: all of them in one step in process (steps run one after
        another there; one step keeps two FFmpeg busy), one each under any other executor."""
        if self.media.segments_per_step is not None:
            return self.media
        auto = 0 if self.runs.executor == "in_process" else 1
        return _changed(self.media, {"segments_per_step": auto})

    def _io_manager(self) -> dict[str, Any]:
        """Where Dagster keeps what steps hand each other (which segments to render: small
        values; the media itself goes through our storage). Dagster's default, files under
        $DAGSTER_HOME, serves the steps of one machine; with S3 storage they go to the same
        bucket (dagster-aws), so steps on other machines (docker, k8s executors) and the
        re-execution of a run elsewhere read them too."""
        if self.storage.backend != "s3":
            return {}
        from dagster_aws.s3 import S3PickleIOManager, S3Resource

        storage = self.storage
        s3 = S3Resource(endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region)
        # Beside the pipeline's objects, not among them (quota, retention and the app's keys
        # are the pipeline's; these are Dagster's, like its step logs under dagster/).
        return {
            "io_manager": S3PickleIOManager(
                s3_resource=s3, s3_bucket=storage.s3_bucket or "", s3_prefix="dagster/io"
            )
        }

    def value(self, item: Declared) -> Any:
        """What this process reads for one declared setting (None: a channel not configured)."""
        if item.group == "home":
            return self.home
        if item.group.startswith("channel:"):
            key = item.group.removeprefix("channel:")
            channel = next((c for c in self.channels if c.key == key), None)
            return None if channel is None else getattr(channel, item.field)
        return getattr(getattr(self, item.group), item.field)

    def replace(self, **groups: Mapping[str, Any]) -> Settings:
        """A copy with fields of some groups changed: `replace(downloads={"allow_http": True})`."""
        changed: dict[str, Any] = {}
        for name, values in groups.items():
            if name in ("home", "channels"):
                changed[name] = values
                continue
            group = getattr(self, name)
            unknown = set(values) - set(type(group).model_fields)
            if unknown:
                raise TypeError(f"{name} has no setting {sorted(unknown)}")
            changed[name] = _changed(group, values)
        return _replace(self, **changed)


def _changed(group: Any, values: Mapping[str, Any]) -> Any:
    """A new group with `values` changed. Built anew, not copied: Dagster keeps a resource's
    configuration from its constructor, which a pydantic copy would leave behind."""
    current = {name: getattr(group, name) for name in type(group).model_fields}
    return type(group)(**{**current, **values})


def _default(env: Mapping[str, str], variable: str, **derived: Any) -> dict[str, Any]:
    """`derived` unless `variable` is set: a default that depends on another setting."""
    return {} if env.get(variable) else derived


def declared() -> list[Declared]:
    """Every setting, in the order README's configuration table lists them."""
    groups: list[tuple[str, type[FromEnv]]] = [
        ("home", Home),
        ("app_db", AppDatabase),
        ("storage", StorageResource),
        ("media", MediaTools),
        ("downloads", ClipDownloads),
        ("runs", Runs),
        ("intake", Intake),
        ("retention", Retention),
        ("webhook", Webhook),
        ("email", Email),
        ("alerting", Alerting),
        *((f"channel:{c.key}", c) for c in CHANNELS),
        ("observability", Observability),
    ]
    return [item for name, group in groups for item in group.declared(name)]


def environment_variables() -> tuple[str, ...]:
    """The names of every variable a setting is read from (aliases included)."""
    return tuple(name for item in declared() for name in (item.env, *item.aliases))
