"""The channels as a family: each is one file registered in `CHANNELS`, configured from its
own settings, its secrets reaching Dagster as environment variables."""

import pytest
from dagster import EnvVar

from export_pipeline.defs.channels import CHANNELS, AlertChannel
from export_pipeline.defs.settings import Settings, declared
from export_pipeline_tests.defs.notify.receivers import ROUTING_KEY, SLACK_CHANNEL, SLACK_TOKEN


def test_every_channel_is_a_resource_with_its_own_settings():
    keys = [channel.key for channel in CHANNELS]
    assert len(set(keys)) == len(keys)
    for channel in CHANNELS:
        assert issubclass(channel, AlertChannel)
        mine = [d for d in declared() if d.group == f"channel:{channel.key}"]
        assert mine, f"{channel.__name__} declares no settings"
        assert not channel.from_env({}).configured  # off until configured


@pytest.mark.parametrize(
    ("env", "keys"),
    [
        ({}, []),
        ({"EXPORT_SLACK_BOT_TOKEN": SLACK_TOKEN}, []),  # a token without a channel: off
        ({"EXPORT_SLACK_BOT_TOKEN": SLACK_TOKEN, "EXPORT_SLACK_CHANNEL": SLACK_CHANNEL},
         ["alert_slack"]),
        ({"EXPORT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY}, ["alert_pagerduty"]),
    ],
)  # fmt: skip
def test_the_configured_channels_come_from_the_environment(env, keys):
    settings = Settings.from_env(env)
    assert [c.key for c in settings.channels] == keys
    assert set(keys) <= set(settings.resources())


def test_secrets_from_the_environment_are_env_vars_in_the_definitions(monkeypatch):
    """The UI shows a resource's config: a token read from the environment appears as the
    variable's name, not its value; one given otherwise (tests) stays a value."""
    monkeypatch.setenv("EXPORT_SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("EXPORT_SLACK_CHANNEL", SLACK_CHANNEL)
    monkeypatch.setenv("EXPORT_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    resources = Settings.from_env().resources()
    assert resources["alert_slack"].token == EnvVar("EXPORT_SLACK_BOT_TOKEN")
    assert resources["alert_pagerduty"].routing_key == EnvVar("EXPORT_PAGERDUTY_ROUTING_KEY")
    given = Settings.from_env({"EXPORT_SLACK_BOT_TOKEN": "xoxb-given",
                               "EXPORT_SLACK_CHANNEL": SLACK_CHANNEL})  # fmt: skip
    assert given.resources()["alert_slack"].token == "xoxb-given"
