"""The Slack channel: its messages, and a loopback Slack Web API that checks them."""

from collections.abc import Iterator

import pytest

from export_pipeline.defs.channels import AlertDeliveryError, Delivery
from export_pipeline.defs.channels.slack import SlackAlerts, slack_text
from export_pipeline_tests.defs.channels.samples import sample_alert
from export_pipeline_tests.defs.notify.receivers import (
    SLACK_CHANNEL,
    SLACK_TOKEN,
    AlertReceivers,
)

UI = "http://dagster.example:3000"


@pytest.fixture
def receivers() -> Iterator[AlertReceivers]:
    with AlertReceivers() as server:
        yield server


def test_slack_text_for_each_action_names_the_incident_and_hides_query_strings():
    alert = sample_alert()
    trigger = slack_text(alert, "trigger")
    assert trigger.startswith(
        ":rotating_light: *[export-pipeline] Export success rate below target*"
    )
    assert (
        "exp-3" in trigger
        and "<https://ui/assets/export_metrics?[Filtered]|Checks in Dagster>" in trigger
    )
    assert "SECRET" not in trigger and "X-Amz-Signature" not in trigger
    assert "https://cdn.example/a.mp4?[Filtered]" in trigger
    resolve = slack_text(alert, "resolve", "passes again")
    assert resolve.startswith(":white_check_mark: *[export-pipeline] Resolved: ")
    assert "passes again" in resolve and "exp-3" not in resolve  # the details were in the trigger
    assert slack_text(alert, "update", "2 more").startswith(
        ":warning: *[export-pipeline] Still failing: "
    )


def test_slack_threads_an_incident_and_reports_refusals_and_outages(receivers):
    from export_pipeline_tests.defs.notify.test_webhook import dead_url

    slack = SlackAlerts(token=SLACK_TOKEN, channel=SLACK_CHANNEL, api_url=receivers.slack_api_url)
    thread = slack.deliver(Delivery(sample_alert(), "trigger", "", "k/1"))
    assert thread  # Slack's ts: the replies go in its thread
    slack.deliver(Delivery(sample_alert(), "update", "2 more", "k/1", ref=thread))
    assert [m.get("thread_ts") for m in receivers.slack] == [None, thread]
    wrong = SlackAlerts(token="xoxb-wrong", channel=SLACK_CHANNEL, api_url=receivers.slack_api_url)
    with pytest.raises(AlertDeliveryError, match="invalid_auth"):
        wrong.post("hello")
    down = SlackAlerts(
        token=SLACK_TOKEN, channel=SLACK_CHANNEL, api_url=dead_url().rsplit("/", 2)[0]
    )
    with pytest.raises(AlertDeliveryError, match="Slack unreachable"):
        down.post("hello")
    assert len(receivers.slack) == 2
