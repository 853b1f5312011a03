"""Alerts to PagerDuty's Events API v2 (or anything that speaks it: Opsgenie, Better Stack,
Grafana OnCall take the same form): `trigger` and `resolve` with a `dedup_key`, so one
incident is one page however often it is reported. (dagster-pagerduty posts through `pypd`
to a fixed host and cannot resolve by key with a custom endpoint; this is the same API over
httpx.)"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from dagster import ConfigurableResource

from export_pipeline.defs.channels.base import (
    SOURCE,
    Alert,
    AlertChannel,
    AlertDeliveryError,
    Delivery,
)
from export_pipeline.defs.config import setting
from export_pipeline.observability.scrub import scrub, scrub_text

USER_AGENT = "export-pipeline-alerts/1"


def pagerduty_event(alert: Alert, action: str, dedup_key: str, client_url: str | None) -> dict:
    """An Events API v2 body (without the routing key) for `trigger` or `resolve`."""
    if action == "resolve":
        return {"event_action": "resolve", "dedup_key": dedup_key}
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": scrub_text(f"[{SOURCE}] {alert.title}: {alert.summary}")[:1024],
            "source": SOURCE,
            "severity": alert.severity,
            "component": alert.component,
            "group": SOURCE,
            "class": alert.kind,
            "custom_details": scrub({**alert.details, "details": alert.lines}),
        },
        "client": SOURCE,
    }
    if alert.links:
        event["links"] = [{"href": href, "text": text} for text, href in alert.links]
    if client_url:
        event["client_url"] = client_url
    return event


class PagerDutyEvents(AlertChannel, ConfigurableResource):
    key: ClassVar[str] = "alert_pagerduty"

    routing_key: str = setting(
        "", "EXPORT_PAGERDUTY_ROUTING_KEY", "alerts to PagerDuty: an Events API v2 "
        "integration (routing) key", secret=True,
    )  # fmt: skip
    url: str = setting(
        "https://events.pagerduty.com/v2/enqueue", "EXPORT_PAGERDUTY_URL", "Events API v2 "
        "endpoint (PagerDuty's EU one, or another receiver of the same API)",
    )  # fmt: skip
    timeout_s: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.routing_key)

    def deliver(self, message: Delivery) -> str | None:
        event = pagerduty_event(
            message.alert, message.action, message.dedup_key, message.client_url
        )
        self.send(event)
        return None

    def send(self, event: dict[str, Any]) -> str | None:
        """POST one event (`routing_key` added); returns the dedup key PagerDuty echoes."""
        body = {"routing_key": self.routing_key, **event}
        try:
            response = httpx.post(
                self.url,
                json=body,
                timeout=self.timeout_s,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise AlertDeliveryError(f"PagerDuty unreachable: {type(exc).__name__}") from exc
        if response.status_code not in (200, 201, 202):
            detail = response.text.strip()[:200]
            raise AlertDeliveryError(f"PagerDuty answered HTTP {response.status_code}: {detail}")
        try:
            return response.json().get("dedup_key")
        except ValueError:
            return None
