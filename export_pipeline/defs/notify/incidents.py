"""The alerts sensor's memory, kept in its cursor: open incidents, read positions and the
messages not yet delivered, so a restart neither repeats an alert nor forgets a resolve."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from export_pipeline.defs.channels import Alert


@dataclass
class Incident:
    dedup_key: str
    alert: dict[str, Any]
    opened_at: float
    opened_after: int = 0  # storage id of the event that opened it (runs)
    state: str = "open"  # open, resolved (until its resolve is delivered)
    refs: dict[str, str] = field(default_factory=dict)  # what each channel answered (a thread)
    failures: int = 1
    request_ids: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, data: dict[str, Any]) -> Incident:
        """From the cursor; a cursor written before channels kept their own references
        holds Slack's thread as `slack_ts`."""
        data = dict(data)
        slack_ts = data.pop("slack_ts", None)
        incident = cls(**data)
        if slack_ts:
            incident.refs.setdefault("alert_slack", slack_ts)
        return incident

    def as_alert(self) -> Alert:
        data = dict(self.alert)
        data["links"] = [tuple(link) for link in data.get("links", [])]
        return Alert(**data)


@dataclass
class Outgoing:
    slot: str  # the incident's slot: check:<name> or run:<job>
    channel: str  # alert_slack or alert_pagerduty
    action: str  # trigger, update, resolve
    note: str = ""
    attempts: int = 0


@dataclass
class State:
    after_failure: int | None = None
    after_success: int | None = None
    incidents: dict[str, Incident] = field(default_factory=dict)
    outbox: list[Outgoing] = field(default_factory=list)

    @classmethod
    def load(cls, cursor: str | None) -> State:
        """An unreadable cursor starts afresh (at worst one repeated alert)."""
        try:
            data = json.loads(cursor) if cursor else {}
            return cls(
                after_failure=data.get("after_failure"),
                after_success=data.get("after_success"),
                incidents={k: Incident.load(v) for k, v in data.get("incidents", {}).items()},
                outbox=[Outgoing(**item) for item in data.get("outbox", [])],
            )
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "after_failure": self.after_failure,
                "after_success": self.after_success,
                "incidents": {k: asdict(v) for k, v in sorted(self.incidents.items())},
                "outbox": [asdict(item) for item in self.outbox],
            },
            separators=(",", ":"),
            default=str,
        )
