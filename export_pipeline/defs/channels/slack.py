"""Alerts to Slack through dagster-slack's `SlackResource`: a message per incident, its
updates as replies in its thread, its resolve broadcast to the channel."""

from __future__ import annotations

from typing import Any, ClassVar

from dagster_slack import SlackResource
from slack_sdk.web.client import WebClient

from export_pipeline.defs.channels.base import (
    SOURCE,
    Alert,
    AlertChannel,
    AlertDeliveryError,
    Delivery,
)
from export_pipeline.defs.config import setting
from export_pipeline.observability.scrub import scrub_text

_ICON = {"trigger": ":rotating_light:", "update": ":warning:", "resolve": ":white_check_mark:"}
_LABEL = {"trigger": "", "update": "Still failing: ", "resolve": "Resolved: "}


def slack_text(alert: Alert, action: str, note: str = "") -> str:
    """Slack mrkdwn for a trigger, an update (a reply in the incident's thread) or a resolve."""
    lines = [f"{_ICON[action]} *[{SOURCE}] {_LABEL[action]}{alert.title}*", alert.summary]
    if note:
        lines.append(note)
    if action == "trigger":
        lines += alert.lines
    links = [f"<{href}|{text}>" for text, href in alert.links]
    if links:
        lines.append(" · ".join(links))
    return scrub_text("\n".join(line for line in lines if line))


class SlackAlerts(AlertChannel, SlackResource):
    """dagster-slack's resource with the channel to post in and the API base URL."""

    key: ClassVar[str] = "alert_slack"
    updates: ClassVar[bool] = True

    token: str = setting(
        "", "EXPORT_SLACK_BOT_TOKEN", "alerts to Slack (with `EXPORT_SLACK_CHANNEL`): a bot "
        "token with `chat:write` (`xoxb-…`)", secret=True,
    )  # fmt: skip
    channel: str = setting(
        "", "EXPORT_SLACK_CHANNEL", "the channel id or name the Slack bot posts alerts in"
    )
    api_url: str = setting(
        "https://slack.com/api/", "EXPORT_SLACK_API_URL", "Slack Web API base URL (a proxy; "
        "the tests' loopback server)",
    )  # fmt: skip
    timeout_s: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.token and self.channel)

    def get_client(self) -> WebClient:
        base = self.api_url if self.api_url.endswith("/") else self.api_url + "/"
        return WebClient(token=self.token, base_url=base, timeout=int(max(1, self.timeout_s)))

    def deliver(self, message: Delivery) -> str | None:
        thread = message.ref if message.action != "trigger" else None
        ts = self.post(
            slack_text(message.alert, message.action, message.note),
            thread_ts=thread,
            broadcast=message.action == "resolve",
        )
        return ts or None

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
