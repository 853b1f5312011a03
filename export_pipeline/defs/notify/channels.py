"""Where alerts go: Slack (dagster-slack's `SlackResource`) and PagerDuty's Events API v2
(or anything that speaks it: Opsgenie, Better Stack, Grafana OnCall take the same form).

Both are Dagster resources configured from the environment, each optional. Their clients
can be pointed elsewhere (`api_url`, `url`): a proxy, a regional endpoint, or the tests'
loopback servers.
"""

from __future__ import annotations

from typing import Any

import httpx
from dagster import ConfigurableResource
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.web.client import WebClient

SLACK_API_URL = "https://slack.com/api/"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
USER_AGENT = "export-pipeline-alerts/1"


class AlertDeliveryError(Exception):
    """A channel did not take a message; it is tried again on the next tick."""


class SlackAlerts(SlackResource):
    """dagster-slack's resource with the channel to post in and the API base URL."""

    channel: str = Field(description="Channel id or name the bot posts alerts in.")
    api_url: str = Field(default=SLACK_API_URL, description="Slack Web API base URL.")
    timeout_s: float = 10.0

    def get_client(self) -> WebClient:
        base = self.api_url if self.api_url.endswith("/") else self.api_url + "/"
        return WebClient(token=self.token, base_url=base, timeout=int(max(1, self.timeout_s)))

    def post(self, text: str, blocks: list[dict] | None = None, thread_ts: str | None = None,
             broadcast: bool = False) -> str:  # fmt: skip
        """Post a message (in a thread when `thread_ts`); returns its `ts`."""
        from slack_sdk.errors import SlackApiError

        kwargs: dict[str, Any] = {"channel": self.channel, "text": text, "unfurl_links": False}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
            kwargs["reply_broadcast"] = broadcast
        try:
            response = self.get_client().chat_postMessage(**kwargs)
        except SlackApiError as exc:
            raise AlertDeliveryError(
                f"Slack refused the message: {exc.response.get('error')}"
            ) from exc
        except Exception as exc:  # urllib errors, timeouts
            raise AlertDeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from exc
        return str(response.get("ts") or "")


class PagerDutyEvents(ConfigurableResource):
    """PagerDuty Events API v2: `trigger` and `resolve` with a `dedup_key`, so one incident
    is one alert however often it is reported. (dagster-pagerduty posts through `pypd`
    to a fixed host and cannot resolve by key with a custom endpoint; this is the same
    API over httpx.)"""

    routing_key: str = Field(description="The integration's routing (integration) key.")
    url: str = Field(default=PAGERDUTY_EVENTS_URL, description="Events API v2 enqueue URL.")
    timeout_s: float = 10.0

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
