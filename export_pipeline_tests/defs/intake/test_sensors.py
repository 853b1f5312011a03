import threading
import time

from dagster import (
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
)
from sqlalchemy import text

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.domain import status as st
from export_pipeline_tests.conftest import clip


def evaluate(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("export_requests_sensor")
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources)
    )
    return sensor(context)


def insert(store, user="u1", **overrides):
    fields = dict(
        project_id="p1",
        user_id=user,
        resolution="720p",
        quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )
    fields.update(overrides)
    return store.insert(**fields)


def test_an_empty_tick_keeps_looking_and_takes_a_row_inserted_meanwhile(settings, store, instance):
    """Under the daemon a tick comes every 5 s: one that finds nothing keeps looking for
    `wait_s`, so a row inserted meanwhile is queued at once, not at the next tick."""
    defs = build_definitions(settings.replace(intake={"wait_s": 3.0}))
    inserter = threading.Timer(0.5, lambda: ids.append(insert(store)))
    ids: list[int] = []
    started = time.monotonic()
    inserter.start()
    result = evaluate(defs, instance)
    took = time.monotonic() - started
    inserter.join()
    assert isinstance(result, SensorResult), result
    assert [r.partition_key for r in result.run_requests] == [f"exp-{ids[0]}"]
    assert store.get(ids[0])["status"] == st.QUEUED
    assert 0.5 <= took < 2.0, took

    # Nothing new: the tick ends when its wait is over (its last look within the wait).
    short = build_definitions(settings.replace(intake={"wait_s": 0.5}))
    started = time.monotonic()
    assert isinstance(evaluate(short, instance, cursor=result.cursor), SkipReason)
    assert 0.35 <= time.monotonic() - started < 2.0


def test_every_run_of_a_partition_carries_the_requests_tags(settings, store, caplog):
    """Backfills and launchpad runs get their tags from the job, not from the sensor: the
    per-user queue limit (tag export/user_id) must hold for them too."""
    job = build_definitions(settings).resolve_job_def("export_video_job")
    request_id = insert(store, user="carol", project_id="trailer")
    tags = job.get_tags_for_partition_key(f"exp-{request_id}", selected_asset_keys=None)
    assert tags["export/user_id"] == "carol"
    assert tags["export/request_id"] == str(request_id)
    assert tags["export/project_id"] == "trailer"
    assert tags["dagster/partition"] == f"exp-{request_id}"

    # No row (deleted by hand) or no database: the run still launches, without the tags.
    missing = job.get_tags_for_partition_key("exp-9999", selected_asset_keys=None)
    assert "export/user_id" not in missing and missing["dagster/partition"] == "exp-9999"
    store.engine.dispose()
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE export_requests"))
    broken = job.get_tags_for_partition_key(f"exp-{request_id}", selected_asset_keys=None)
    assert "export/user_id" not in broken
    assert f"no export/* tags for partition exp-{request_id}: " in caplog.text


def test_new_rows_become_partitions_and_runs(settings, store, instance):
    defs = build_definitions(settings)
    ids = [insert(store, user=f"user-{n}") for n in range(3)]
    result = evaluate(defs, instance)
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == [f"exp-{i}" for i in ids]
    assert [r.run_key for r in result.run_requests] == [f"exp-{i}" for i in ids]
    tags = result.run_requests[1].tags
    assert tags["export/request_id"] == str(ids[1])
    assert tags["export/user_id"] == "user-1" and tags["export/project_id"] == "p1"
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == export_partitions.name
    assert list(add.partition_keys) == [f"exp-{i}" for i in ids]
    assert result.cursor == str(ids[-1])
    assert all(store.get(i)["status"] == st.QUEUED for i in ids)

    # The next tick starts after the cursor: nothing new, nothing launched twice.
    again = evaluate(defs, instance, cursor=result.cursor)
    assert isinstance(again, SkipReason)
    # A tick that failed to save its cursor sees queued rows again with the same run keys,
    # which Dagster deduplicates.
    replay = evaluate(defs, instance, cursor=None)
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in result.run_requests]


def test_invalid_rows_fail_with_a_reason_and_do_not_stop_the_sensor(settings, store, instance):
    defs = build_definitions(settings)
    bad_resolution = insert(store, resolution="8k")
    with store.engine.begin() as conn:  # the app wrote broken JSON with its own SQL
        conn.execute(
            text(
                "INSERT INTO export_requests (project_id, user_id, resolution, quality, clips)"
                " VALUES ('p1', 'u1', '720p', 'low', '{oops')"
            )
        )
    bad_json = bad_resolution + 1
    empty = insert(store, clips=[])
    negative = insert(store, clips=[clip("https://cdn.example/a.mp4", 1, trim=-2)])
    good = insert(store)
    result = evaluate(defs, instance)
    assert [r.partition_key for r in result.run_requests] == [f"exp-{good}"]
    assert result.cursor == str(good)
    expectations = {
        bad_resolution: "resolution '8k' is not supported",
        bad_json: "clips is not valid JSON",
        empty: "clips is empty",
        negative: "clip 1: trim_start must be a number >= 0",
    }
    for request_id, message in expectations.items():
        row = store.get(request_id)
        assert row["status"] == st.FAILED
        assert message in row["error_message"]
        assert row["completed_at"] is not None
    assert store.get(good)["status"] == st.QUEUED


def test_rows_are_taken_in_batches(settings, store, instance):

    defs = build_definitions(settings.replace(intake={"batch_size": 2}))
    ids = [insert(store) for _ in range(5)]
    first = evaluate(defs, instance)
    second = evaluate(defs, instance, cursor=first.cursor)
    third = evaluate(defs, instance, cursor=second.cursor)
    keys = [r.partition_key for res in (first, second, third) for r in res.run_requests]
    assert keys == [f"exp-{i}" for i in ids]
    assert len(first.run_requests) == 2


def test_failure_sensor_marks_the_row_failed_when_no_step_could(settings, store, instance, cdn):
    """A worker killed outright writes nothing to the row; the run failure sensor does."""
    defs = build_definitions(settings)
    request_id = insert(store, clips=[clip(cdn.url("missing.mp4"), 1)])
    (failed,) = run_requested(instance, defs, evaluate_intake(instance, defs, cursor=None))
    assert not failed.success
    # Put the row back as a killed worker would have left it: processing, no message.
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE export_requests SET status='processing', error_message=NULL WHERE id=:i"),
            {"i": request_id},
        )
    run = instance.get_run_by_id(failed.run_id)
    assert run.status == DagsterRunStatus.FAILURE
    failure_event = next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = build_run_status_sensor_context(
        sensor_name="export_failure_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure_event,
        resources=dict(defs.resources),
    ).for_run_failure()
    defs.resolve_sensor_def("export_failure_sensor")(context)
    row = store.get(request_id)
    assert row["status"] == st.FAILED
    assert "downloaded_clips failed" in row["error_message"]
    assert "clip 1 (scene 1)" in row["error_message"]


def test_failure_sensor_ignores_runs_that_will_be_retried_and_stale_runs(
    settings, store, instance, cdn
):
    defs = build_definitions(settings)
    request_id = insert(store, clips=[clip(cdn.url("missing.mp4"), 1)])
    (failed,) = run_requested(instance, defs, evaluate_intake(instance, defs, cursor=None))
    run = instance.get_run_by_id(failed.run_id)
    failure_event = next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with store.engine.begin() as conn:  # a newer run now owns the row
        conn.execute(
            text("UPDATE export_requests SET status='processing', run_id='newer' WHERE id=:i"),
            {"i": request_id},
        )
    for tags in ({"dagster/will_retry": "true"}, {}):
        context = build_run_status_sensor_context(
            sensor_name="export_failure_sensor",
            dagster_instance=instance,
            dagster_run=run.with_tags({**run.tags, **tags}),
            dagster_event=failure_event,
            resources=dict(defs.resources),
        ).for_run_failure()
        defs.resolve_sensor_def("export_failure_sensor")(context)
        assert store.get(request_id)["status"] == st.PROCESSING


def test_a_queued_export_has_a_time_left_before_any_history(settings, store, instance):
    """A fresh install: a 720p WebM export is queued with the built-in estimate, longer
    than an H.264 one of the same clips (VP9 costs more), refined later by history."""
    from export_pipeline.domain import eta

    defs = build_definitions(settings)
    clips = [clip("https://cdn.example/a.mp4", 1, duration=8.0)] * 3
    webm = insert(store, user="ann", format="webm", clips=clips)
    mp4 = insert(store, user="bob", clips=clips)
    evaluate(defs, instance)
    rows = {i: store.get(i) for i in (webm, mp4)}
    assert all(r["status"] == st.QUEUED and r["estimated_finish_at"] for r in rows.values())
    assert rows[webm]["eta_s"] == round(eta.builtin_prior("720p", "webm", 24.0))
    assert rows[mp4]["eta_s"] == round(eta.builtin_prior("720p", "mp4", 24.0))
    assert rows[webm]["eta_s"] > rows[mp4]["eta_s"]
