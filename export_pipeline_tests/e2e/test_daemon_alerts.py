"""Alerts through the real `dagster-daemon` (PostgreSQL instance, the repository's
dagster.yaml with its run retries): an export whose clip is gone fails for good, and Slack
and PagerDuty stand-ins on loopback get one trigger naming the request and its run; the
next export that completes resolves the incident, once. The sensor's resources reach it
in the daemon's code server as they would in production (context.resources)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from export_pipeline.defs.notify.alerts import SENSOR_NAME
from export_pipeline.domain import status as st
from export_pipeline_tests.daemon import DaemonWorld, wait_for
from export_pipeline_tests.defs.notify.receivers import (
    ROUTING_KEY,
    SLACK_CHANNEL,
    SLACK_TOKEN,
    AlertReceivers,
)

pytestmark = pytest.mark.e2e

UI = "http://dagster.example:3000"


@pytest.fixture
def receivers():
    with AlertReceivers() as server:
        yield server


@pytest.fixture
def world(tmp_path, new_postgres_db, receivers):
    env = {
        "EXPORT_SLACK_BOT_TOKEN": SLACK_TOKEN,
        "EXPORT_SLACK_CHANNEL": SLACK_CHANNEL,
        "EXPORT_SLACK_API_URL": receivers.slack_api_url,
        "EXPORT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "EXPORT_PAGERDUTY_URL": receivers.pagerduty_url,
        "EXPORT_ALERT_INTERVAL_S": "1",
        "EXPORT_DAGSTER_WEBSERVER_URL": UI,
    }
    world = DaemonWorld(tmp_path, new_postgres_db(), new_postgres_db(), env)
    yield world.start()
    world.stop()


def alerts_cursor(world: DaemonWorld) -> str | None:
    with DagsterInstance.from_config(str(world.home)) as instance:
        for state in instance.all_instigator_state():
            if state.name == SENSOR_NAME and state.instigator_data is not None:
                return state.instigator_data.cursor
    return None


def test_a_final_failure_alerts_once_and_the_next_success_resolves(world, receivers, cdn):
    # Its first tick marks where the run history starts for it (nothing older is replayed).
    wait_for(lambda: alerts_cursor(world), 60, "the alerts sensor's first tick")
    gone = world.request("u-alerts", cdn.url("gone.mp4"))
    receivers.wait_for(lambda r: r.slack and r.pagerduty, timeout_s=90)
    row = world.store.get(gone)
    assert row["status"] == st.FAILED
    (message,) = receivers.slack
    assert f"exp-{gone}: expired_clip_url" in message["text"]
    assert f"<{UI}/runs/{row['run_id']}|" in message["text"]
    ((action, dedup),) = receivers.actions()
    assert action == "trigger" and dedup.startswith("export-pipeline/runs/export_video_job/")

    ok = world.request("u-alerts", cdn.url("classic.mp4"))
    receivers.wait_for(lambda r: len(r.pagerduty) >= 2, timeout_s=90)
    assert world.store.get(ok)["status"] == st.COMPLETE
    assert receivers.actions() == [("trigger", dedup), ("resolve", dedup)]
    assert "Resolved: export_video_job run failed for good" in receivers.slack[-1]["text"]
    assert receivers.refused == []
