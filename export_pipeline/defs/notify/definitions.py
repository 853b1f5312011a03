"""Telling people: the completion webhook and the `expiring` reminder to the app (when a
URL and a secret are set), emails to the creator (when an SMTP host is set), alerts to an
operator (when a channel is configured)."""

from __future__ import annotations

from dagster import Definitions

from export_pipeline.defs.config import reveal
from export_pipeline.defs.intake.sensors import JOB_NAME
from export_pipeline.defs.notify.alerts import build_export_alerts_sensor
from export_pipeline.defs.notify.mail import (
    EmailPolicy,
    build_export_email_sensor,
    build_export_expiry_email_sensor,
)
from export_pipeline.defs.notify.reminder import build_export_expiry_reminder_sensor
from export_pipeline.defs.notify.webhook import WebhookPolicy, build_export_webhook_sensor
from export_pipeline.defs.operations.metrics import JOB_NAME as METRICS_JOB
from export_pipeline.defs.operations.retention import RETENTION_JOB, TEMP_SWEEP_JOB
from export_pipeline.defs.settings import Email, Settings
from export_pipeline.io.mail import SmtpConfig

WATCHED_JOBS = (JOB_NAME, METRICS_JOB, RETENTION_JOB, TEMP_SWEEP_JOB)


def notify_definitions(settings: Settings) -> Definitions:
    sensors = []
    webhook = settings.webhook
    if webhook.url:
        secret = reveal(webhook.secret) or ""  # the value, not an EnvVar reading as its name
        policy = WebhookPolicy(
            webhook.url,
            secret,
            max_attempts=webhook.max_attempts,
            backoff_base_s=webhook.backoff_s,
            backoff_max_s=webhook.max_backoff_s,
            timeout_s=webhook.timeout_s,
        )
        sensors.append(build_export_webhook_sensor(policy, interval_s=webhook.interval_s))
        sensors.append(
            build_export_expiry_reminder_sensor(
                webhook.url,
                secret,
                remind_days=webhook.reminder_days,
                timeout_s=webhook.timeout_s,
            )
        )
    if settings.email.enabled:
        policy = email_policy(settings.email)
        sensors.append(build_export_email_sensor(policy, interval_s=settings.email.interval_s))
        sensors.append(build_export_expiry_email_sensor(policy, remind_days=webhook.reminder_days))
    if settings.channels:  # then running by default
        sensors.append(
            build_export_alerts_sensor(
                [channel.key for channel in settings.channels],
                WATCHED_JOBS,
                webserver_url=settings.alerting.webserver_url,
                interval_s=settings.alerting.interval_s,
            )
        )
    return Definitions(sensors=sensors)


def email_policy(email: Email) -> EmailPolicy:
    """The SMTP server, addresses and templates of the `Email` settings, checked."""
    smtp = SmtpConfig(
        host=email.host or "",
        port=email.port,
        security=email.security,
        username=email.username,
        password=reveal(email.password),
        timeout_s=email.timeout_s,
        ca_file=email.ca_file,
    )
    return EmailPolicy.build(
        smtp,
        from_address=email.from_address,
        reply_to=email.reply_to,
        templates_dir=email.templates_dir,
    )
