"""What an alert channel is: a resource that delivers an incident's messages somewhere a
person sees them. Each channel is one file in this package, registered in `CHANNELS`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from export_pipeline.defs.config import FromEnv

SOURCE = "export-pipeline"
ACTIONS = ("trigger", "update", "resolve")


class AlertDeliveryError(Exception):
    """A channel did not take a message; it is tried again on the next tick."""


@dataclass
class Alert:
    """What is said about one incident, whatever the channel."""

    title: str
    summary: str
    severity: str  # critical, error, warning, info
    component: str
    kind: str  # kpi_check, run_failure
    lines: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One message of an incident to one channel: `trigger` opens it, `update` adds to it
    (only channels with `updates`), `resolve` closes it. `dedup_key` names the incident
    everywhere; `ref` is what this channel answered to the trigger (Slack's thread), if
    anything; `client_url` is the Dagster UI's address."""

    alert: Alert
    action: str
    note: str
    dedup_key: str
    ref: str | None = None
    client_url: str | None = None


class AlertChannel(FromEnv):
    """Mixed into a ConfigurableResource whose fields are the channel's settings."""

    key: ClassVar[str]  # the resource key, e.g. "alert_slack"
    updates: ClassVar[bool] = False  # is it told of each further failure of an open incident

    @property
    def configured(self) -> bool:
        """Whether its settings are there (a channel that is not is left out)."""
        raise NotImplementedError

    def deliver(self, message: Delivery) -> str | None:
        """Send one message; returns the channel's reference for a trigger (or None).
        Raises AlertDeliveryError when the channel did not take it."""
        raise NotImplementedError
