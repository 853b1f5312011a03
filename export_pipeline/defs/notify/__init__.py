"""Telling the app about exports (the signed completion webhook and the `expiring`
reminder) and the creator (emails to `notify_email`)."""

from export_pipeline.defs.notify.mail import (
    EmailPolicy,
    build_export_email_sensor,
    build_export_expiry_email_sensor,
)
from export_pipeline.defs.notify.reminder import (
    build_export_expiry_reminder_sensor,
    reminder_payload,
)
from export_pipeline.defs.notify.webhook import (
    DELIVERY_HEADER,
    NOTIFY_STATUSES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_export_webhook_sensor,
    payload,
    sign,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "NOTIFY_STATUSES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EmailPolicy",
    "build_export_email_sensor",
    "build_export_expiry_email_sensor",
    "build_export_expiry_reminder_sensor",
    "build_export_webhook_sensor",
    "payload",
    "reminder_payload",
    "sign",
    "verify",
]
