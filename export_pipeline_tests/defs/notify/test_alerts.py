"""Alerts to a person: `export_alerts_sensor` against loopback Slack and PagerDuty receivers
that check the payloads, on real Dagster instances with real check evaluations and runs:
a failing KPI check alerts once and resolves once; a run that will be retried does not
alert, a final failure does, once per incident; a channel that is down gets the alert later."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    ReexecutionOptions,
    build_sensor_context,
    execute_job,
    in_process_executor,
    instance_for_test,
    job,
    op,
    reconstructable,
)

from export_pipeline.definitions import build_definitions
from export_pipeline.defs.channels import PagerDutyEvents, SlackAlerts
from export_pipeline.defs.intake.sensors import JOB_NAME
from export_pipeline.defs.notify.alerts import SENSOR_NAME, build_export_alerts_sensor
from export_pipeline.defs.notify.incidents import State
from export_pipeline.defs.notify.messages import Links
from export_pipeline.defs.operations.metrics import (
    QUOTA_CHECK_NAME,
    SPEED_CHECK_NAME,
    SUCCESS_CHECK_NAME,
)
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.io.storage import LocalStorage
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.defs.notify.receivers import (
    ROUTING_KEY,
    SLACK_CHANNEL,
    SLACK_TOKEN,
    AlertReceivers,
)
from export_pipeline_tests.defs.operations.test_metrics import (
    add_finished,
    materialize_metrics,
    set_row,
)

UI = "http://dagster.example:3000"
SLACK_KEY, PAGERDUTY_KEY = SlackAlerts.key, PagerDutyEvents.key


@pytest.fixture
def receivers() -> Iterator[AlertReceivers]:
    with AlertReceivers() as server:
        yield server


@pytest.fixture
def retrying_instance() -> Iterator[DagsterInstance]:
    """An instance with run retries on (one retry), failed steps included."""
    with instance_for_test(overrides={"run_retries": {"enabled": True, "max_retries": 1}}) as inst:
        yield inst


class Alerts:
    """The sensor with real resources, evaluated tick by tick with its cursor kept, as the
    daemon would."""

    def __init__(self, settings, instance, receivers: AlertReceivers, jobs=(JOB_NAME,),
                 channels=(SLACK_KEY, PAGERDUTY_KEY)):  # fmt: skip
        self.sensor = build_export_alerts_sensor(channels, jobs, webserver_url=UI)
        resources = {"app_db": AppDatabase(url=settings.app_db.url)}
        if SLACK_KEY in channels:
            resources[SLACK_KEY] = SlackAlerts(
                token=SLACK_TOKEN, channel=SLACK_CHANNEL, api_url=receivers.slack_api_url
            )
        if PAGERDUTY_KEY in channels:
            resources[PAGERDUTY_KEY] = PagerDutyEvents(
                routing_key=ROUTING_KEY, url=receivers.pagerduty_url
            )
        self.resources = resources
        self.defs = Definitions(sensors=[self.sensor], resources=resources)
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> str:
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources=self.resources,
        )
        # evaluate_tick, as the daemon does: calling the sensor directly would pass the
        # required resources as keyword arguments, which the daemon never does.
        data = self.sensor.evaluate_tick(context)
        assert not data.run_requests
        self.cursor = data.cursor
        return data.skip_message

    def state(self) -> State:
        return State.load(self.cursor)


# ---- messages and memory, without servers


def test_links_without_a_webserver_url_are_left_out():
    assert Links(None).run("abc") is None and Links("").checks() is None
    assert Links(UI + "/").run("abc") == f"{UI}/runs/abc"
    assert Links(UI).checks() == f"{UI}/assets/export_metrics?view=checks"


def test_a_broken_cursor_starts_afresh():
    for cursor in (None, "", "not json", '{"incidents": [1]}', '{"outbox": [{"x": 1}]}'):
        state = State.load(cursor)
        assert state.incidents == {} and state.outbox == []
    assert State.load(State().dump()).after_failure is None


def test_the_sensor_needs_a_known_channel():
    for channels in ((), ("alert_email",)):
        with pytest.raises(ValueError, match="alert channels"):
            build_export_alerts_sensor(channels, [JOB_NAME])


def configured(env: dict[str, str]) -> tuple:
    """The channels Settings.from_env finds configured in `env`."""
    from export_pipeline.defs.settings import Settings

    return Settings.from_env(env).channels


def test_definitions_have_the_alerts_sensor_only_with_a_channel(settings):

    assert SENSOR_NAME not in {s.name for s in build_definitions(settings).sensors}
    for env, keys in (
        (
            {"EXPORT_SLACK_BOT_TOKEN": SLACK_TOKEN, "EXPORT_SLACK_CHANNEL": SLACK_CHANNEL},
            {SLACK_KEY},
        ),
        ({"EXPORT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY}, {PAGERDUTY_KEY}),
    ):
        defs = build_definitions(settings.replace(channels=configured(env)))
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        assert sensor.required_resource_keys == {"app_db", *keys}
        assert keys <= set(defs.resources)
    # a token without a channel is not a channel
    assert SENSOR_NAME not in {
        s.name
        for s in build_definitions(
            settings.replace(channels=configured({"EXPORT_SLACK_BOT_TOKEN": SLACK_TOKEN}))
        ).sensors
    }


# ---- KPI checks: real evaluations recorded on a real instance


def fail_the_success_rate(store) -> list[int]:
    ok = add_finished(store, st.COMPLETE, export_s=30)
    failed = [
        add_finished(store, st.FAILED, error_message=(
            "downloaded_clips failed: clip 1 (scene 1): its source URL has expired or was "
            "removed (HTTP 403); regenerate the clip and export again"), run_id="run-expired-1",
            error_cause="expired_clip_url"),
        add_finished(store, st.FAILED, error_message=(
            "downloaded_clips failed: clip 2 (scene 2): its source URL has expired or was "
            "removed (HTTP 410)"), run_id="run-expired-2", error_cause="expired_clip_url"),
        add_finished(store, st.FAILED, retry_count=3, run_id="run-ffmpeg-1", error_cause="ffmpeg",
                     error_message=(
            "encoded_video failed (after 4 attempts): ffmpeg exited with code 1: "
            "https://s3.example/clips/a.mp4?X-Amz-Signature=deadbeef")),
    ]  # fmt: skip
    return [ok, *failed]


def test_a_failing_check_alerts_once_and_resolves_once(settings, store, instance, receivers):
    ok, *failed = fail_the_success_rate(store)
    _, checks = materialize_metrics(settings, instance)
    assert not checks[SUCCESS_CHECK_NAME].passed and checks[SPEED_CHECK_NAME].passed
    alerts = Alerts(settings, instance, receivers)
    assert "opened check:success_rate_on_target; 2 sent" in alerts.tick()
    for _ in range(3):  # the check stays red: nothing more is said
        assert "nothing new; 0 sent" in alerts.tick()
    materialize_metrics(settings, instance)  # evaluated again, still failing: the same incident
    alerts.tick()

    (message,) = receivers.slack
    text = message["text"]
    assert "Export success rate below target" in text
    assert "success rate 25.0 % (target 95 %)" in text
    assert "Failures by cause (last 24 h): expired_clip_url 2, ffmpeg 1" in text
    for request_id in failed:
        assert f"exp-{request_id}" in text
    assert f"<{UI}/runs/run-expired-1|run run-expi>" in text
    assert f"<{UI}/assets/export_metrics?[Filtered]|Checks in Dagster>" in text
    assert "deadbeef" not in text and "X-Amz-Signature" not in text
    ((action, dedup),) = receivers.actions()
    assert action == "trigger" and dedup.startswith("export-pipeline/check/success_rate_on_target/")
    payload = receivers.pagerduty[0]["payload"]
    assert payload["severity"] == "warning" and payload["component"] == "export_metrics"
    assert payload["summary"].startswith("[export-pipeline] Export success rate below target: ")
    details = payload["custom_details"]
    assert details["failures_by_cause"] == {"expired_clip_url": 2, "ffmpeg": 1}
    assert sorted(details["request_ids"]) == sorted(failed)
    assert {link["text"] for link in receivers.pagerduty[0]["links"]} == {
        "Checks in Dagster",
        "Check run",
    }

    # A day later the failures have left the window and exports succeed: the check passes.
    for request_id in failed:
        set_row(store, request_id, created_at=utcnow() - timedelta(days=2))
    _, checks = materialize_metrics(settings, instance)
    assert checks[SUCCESS_CHECK_NAME].passed
    assert "resolved check:success_rate_on_target; 2 sent" in alerts.tick()
    for _ in range(3):
        alerts.tick()
    assert receivers.actions() == [("trigger", dedup), ("resolve", dedup)]
    trigger, resolve = receivers.slack
    assert resolve["thread_ts"] == trigger["ts"] and resolve["reply_broadcast"] is True
    assert "Resolved: Export success rate below target" in resolve["text"]
    assert "success rate 100.0 % (target 95 %)" in resolve["text"]
    assert alerts.state().incidents == {} and alerts.state().outbox == []
    assert receivers.refused == []

    # A new failure later is a new incident, with a new dedup key.
    fail_the_success_rate(store)
    materialize_metrics(settings, instance)
    alerts.tick()
    assert len(receivers.slack) == 3 and receivers.actions()[-1][0] == "trigger"
    assert receivers.actions()[-1][1] != dedup


def test_a_slow_p95_names_the_slowest_exports(settings, store, instance, receivers):
    slow = add_finished(store, st.COMPLETE, export_s=150)
    add_finished(store, st.COMPLETE, export_s=30)
    _, checks = materialize_metrics(settings, instance)
    assert not checks[SPEED_CHECK_NAME].passed
    alerts = Alerts(settings, instance, receivers, channels=(SLACK_KEY,))
    alerts.tick()
    (message,) = receivers.slack
    assert "1-minute 1080p exports slower than target" in message["text"]
    assert f"exp-{slow} (150 s" in message["text"]
    assert receivers.pagerduty == []  # not configured: not sent


def test_storage_nearly_full_alerts_with_where_the_bytes_are(settings, store, instance, receivers):
    storage = LocalStorage(Path(settings.storage.local_root))
    request_id = add_finished(store, st.COMPLETE, export_s=30)
    storage.put_bytes(f"videos/exp-{request_id}.mp4", b"v" * 6000)
    storage.put_bytes("segments/ab/segment.mp4", b"s" * 2000)
    full = settings.replace(storage={"quota_mb": (9000) / 1024**2})  # 8000 of 9000 bytes: 89 %
    _, checks = materialize_metrics(full, instance)
    assert not checks[QUOTA_CHECK_NAME].passed
    alerts = Alerts(full, instance, receivers, channels=(SLACK_KEY,))
    assert f"opened check:{QUOTA_CHECK_NAME}; 1 sent" in alerts.tick()
    assert "nothing new; 0 sent" in alerts.tick()
    (message,) = receivers.slack
    assert "Storage nearly full" in message["text"] and "88.9 % full" in message["text"]
    assert "By kind: videos 5.9 KB, segments 2.0 KB" in message["text"]
    assert "Top users: " in message["text"] and "(1 exports)" in message["text"]

    storage.delete("segments/ab/segment.mp4")  # 6000 of 9000: 67 %
    _, checks = materialize_metrics(full, instance)
    assert checks[QUOTA_CHECK_NAME].passed
    assert f"resolved check:{QUOTA_CHECK_NAME}; 1 sent" in alerts.tick()
    assert "Resolved: Storage nearly full" in receivers.slack[-1]["text"]


def test_a_channel_that_is_down_gets_the_alert_later(settings, store, instance, receivers):
    fail_the_success_rate(store)
    materialize_metrics(settings, instance)
    receivers.fail_next["slack"] = 2
    alerts = Alerts(settings, instance, receivers)
    assert "1 sent, 1 failed" in alerts.tick()
    assert len(receivers.pagerduty) == 1 and receivers.slack == []
    assert "0 sent, 1 failed" in alerts.tick()
    assert "1 sent, 0 failed" in alerts.tick()
    alerts.tick()
    assert len(receivers.slack) == 1 and len(receivers.pagerduty) == 1  # no repeats


def test_a_resolve_waits_for_its_trigger(settings, store, instance, receivers):
    failed = fail_the_success_rate(store)[1:]
    materialize_metrics(settings, instance)
    receivers.fail_next["pagerduty"] = 1
    alerts = Alerts(settings, instance, receivers, channels=(PAGERDUTY_KEY,))
    alerts.tick()  # the trigger fails
    for request_id in failed:
        set_row(store, request_id, created_at=utcnow() - timedelta(days=2))
    materialize_metrics(settings, instance)  # passes now
    alerts.tick()  # trigger, then resolve, in that order
    (trigger, resolve) = receivers.actions()
    assert trigger[0] == "trigger" and resolve == ("resolve", trigger[1])


# ---- runs: real runs failing and succeeding on an instance with run retries


@op(config_schema={"fail": bool})
def maybe_fail(context):
    if context.op_config["fail"]:
        raise RuntimeError("the worker lost its scratch disk")


@job(name="toy_job", executor_def=in_process_executor)
def toy_job():
    maybe_fail()


def run_toy(instance, fail: bool, retry_of=None):
    """A run of toy_job. `retry_of`: a failed run this one retries from failure, as the
    daemon's run retries do: a re-execution (same root run) with the daemon's tags
    (`dagster/parent_run_id`, `dagster/root_run_id`: the run group in which Dagster counts
    retries; `dagster/retry_number`)."""
    config = {"ops": {"maybe_fail": {"config": {"fail": fail}}}}
    if retry_of is None:
        result = toy_job.execute_in_process(
            run_config=config, instance=instance, raise_on_error=False
        )
    else:
        root = retry_of.root_run_id or retry_of.run_id
        result = execute_job(
            reconstructable(toy_job),
            instance=instance,
            run_config=config,
            tags={
                "dagster/parent_run_id": retry_of.run_id,
                "dagster/root_run_id": root,
                "dagster/retry_number": str(
                    int(retry_of.tags.get("dagster/retry_number", "0")) + 1
                ),
            },
            reexecution_options=ReexecutionOptions.from_failure(retry_of.run_id, instance),
            raise_on_error=False,
        )
    assert result.success is not fail
    return instance.get_run_by_id(result.run_id)


def test_a_run_that_will_be_retried_does_not_alert_its_final_failure_does(
    settings, store, retrying_instance, receivers
):
    instance = retrying_instance
    run_toy(instance, fail=True)  # history before the sensor's first tick is not replayed
    alerts = Alerts(settings, instance, receivers, jobs=["toy_job"])
    alerts.tick()

    first = run_toy(instance, fail=True)
    assert first.tags["dagster/will_retry"] == "true"  # Dagster's own verdict, set on failure
    assert "nothing new" in alerts.tick()
    assert receivers.slack == [] and receivers.pagerduty == []

    final = run_toy(instance, fail=True, retry_of=first)  # the one retry allowed fails too
    assert final.tags["dagster/will_retry"] == "false"
    assert "opened run:toy_job" in alerts.tick()
    alerts.tick()
    (message,) = receivers.slack
    assert "toy_job run failed for good" in message["text"]
    assert f"<{UI}/runs/{final.run_id}|Run in Dagster>" in message["text"]
    assert "(run attempt 2)" in message["text"]
    ((action, dedup),) = receivers.actions()
    assert action == "trigger" and dedup.startswith("export-pipeline/runs/toy_job/")
    assert receivers.pagerduty[0]["payload"]["severity"] == "error"
    assert receivers.pagerduty[0]["payload"]["custom_details"]["run_id"] == final.run_id

    # Two more final failures while the incident is open: one reply in the thread, no page.
    others = [run_toy(instance, fail=True, retry_of=run_toy(instance, fail=True)) for _ in range(2)]
    assert "updated run:toy_job" in alerts.tick()
    assert len(receivers.pagerduty) == 1 and len(receivers.slack) == 2
    update = receivers.slack[1]
    assert (
        update["thread_ts"] == message["ts"]
        and "2 more final failure(s), 3 in this incident" in update["text"]
    )
    assert all(o.run_id in update["text"] for o in others)

    # A canceled-free, successful run of the job resolves it, once.
    ok = run_toy(instance, fail=False)
    assert "resolved run:toy_job" in alerts.tick()
    alerts.tick()
    assert receivers.actions() == [("trigger", dedup), ("resolve", dedup)]
    resolve = receivers.slack[-1]
    assert resolve["thread_ts"] == message["ts"] and ok.run_id[:8] in resolve["text"]
    assert "after 3 final failure(s)" in resolve["text"]
    assert receivers.refused == []


def test_runs_of_jobs_not_watched_are_ignored(settings, store, instance, receivers):
    alerts = Alerts(settings, instance, receivers, jobs=[JOB_NAME])
    alerts.tick()
    run = run_toy(instance, fail=True)
    assert "dagster/will_retry" not in run.tags  # run retries are off on this instance
    alerts.tick()
    assert receivers.slack == [] and receivers.pagerduty == []
    assert alerts.state().after_failure > 0  # read past it all the same


@pytest.mark.e2e
def test_a_real_export_that_fails_for_good_names_the_request_and_the_cause(
    settings, store, cdn, receivers
):
    """export_video_job with the repository's retry settings (a failed step is not retried
    as a run): a clip whose URL is gone fails the export, and the alert says which request,
    why, and links its run; the next export that succeeds resolves it."""
    overrides = {
        "run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}
    }
    with instance_for_test(overrides=overrides) as instance:
        from export_pipeline_tests.e2e.test_pipeline import export

        alerts = Alerts(settings, instance, receivers)
        alerts.tick()
        gone = cdn.url("missing.mp4") + "?token=s3cr3t-cdn-token"
        request_id, result, _ = export(settings, store, instance, [clip(gone, 1)], user_id="u-42")
        assert not result.success
        assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "false"
        alerts.tick()
        (message,) = receivers.slack
        text = message["text"]
        assert f"exp-{request_id}: expired_clip_url" in text
        assert "its source URL has expired or was removed (HTTP 404)" in text
        assert (
            f"<{UI}/runs/{result.run_id}|run {result.run_id[:8]}>" in text and "user u-42" in text
        )
        assert "s3cr3t" not in text and "s3cr3t" not in str(receivers.pagerduty)
        assert receivers.pagerduty[0]["payload"]["custom_details"]["request_ids"] == [request_id]

        _, ok, _ = export(
            settings, store, instance, [clip(cdn.url("classic.mp4"), 1, duration=0.5)]
        )
        assert ok.success
        alerts.tick()
        assert [a for a, _ in receivers.actions()] == ["trigger", "resolve"]
        assert f"exp-{request_id}" in receivers.slack[-1]["text"]
