"""Telling the app about finished exports: the signed completion webhook."""

from export_pipeline.notify.webhook import (
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
    "build_export_webhook_sensor",
    "payload",
    "sign",
    "verify",
]
