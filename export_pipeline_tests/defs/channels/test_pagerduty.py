"""The PagerDuty channel: Events API v2 bodies, checked by a loopback receiver."""

from collections.abc import Iterator

import pytest

from export_pipeline.defs.channels import AlertDeliveryError, Delivery
from export_pipeline.defs.channels.pagerduty import PagerDutyEvents, pagerduty_event
from export_pipeline_tests.defs.channels.samples import sample_alert
from export_pipeline_tests.defs.notify.receivers import (
    ROUTING_KEY,
    AlertReceivers,
    pagerduty_problems,
)

UI = "http://dagster.example:3000"


@pytest.fixture
def receivers() -> Iterator[AlertReceivers]:
    with AlertReceivers() as server:
        yield server


def test_pagerduty_events_are_valid_events_v2():
    alert = sample_alert()
    trigger = {"routing_key": ROUTING_KEY, **pagerduty_event(alert, "trigger", "k/1", UI)}
    assert pagerduty_problems(trigger) == []
    assert (
        trigger["payload"]["severity"] == "warning" and trigger["payload"]["class"] == "kpi_check"
    )
    assert trigger["payload"]["custom_details"]["password"] == "[Filtered]"
    assert "SECRET" not in str(trigger)
    assert trigger["client_url"] == UI
    resolve = {"routing_key": ROUTING_KEY, **pagerduty_event(alert, "resolve", "k/1", UI)}
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "k/1"}
    assert pagerduty_problems(resolve) == []


def test_pagerduty_pages_once_and_reports_refusals_and_outages(receivers):
    from export_pipeline_tests.defs.notify.test_webhook import dead_url

    pager = PagerDutyEvents(routing_key=ROUTING_KEY, url=receivers.pagerduty_url)
    assert pager.deliver(Delivery(sample_alert(), "trigger", "", "k/1", client_url=UI)) is None
    pager.deliver(Delivery(sample_alert(), "resolve", "fine again", "k/1"))
    assert [e["event_action"] for e in receivers.pagerduty] == ["trigger", "resolve"]
    bad_key = PagerDutyEvents(routing_key="nope", url=receivers.pagerduty_url)
    with pytest.raises(AlertDeliveryError, match="HTTP 400"):
        bad_key.send({"event_action": "resolve", "dedup_key": "k"})
    with pytest.raises(AlertDeliveryError, match="PagerDuty unreachable"):
        PagerDutyEvents(routing_key=ROUTING_KEY, url=dead_url()).send({"event_action": "resolve"})
    assert len(receivers.pagerduty) == 2
