"""Place in the queue: the replay of Dagster's queue (pure), then the sensor against a real
instance with the repo's dagster.yaml concurrency config and runs waiting in its queue."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
import yaml
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterRunStatus,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from export_pipeline.cli.local_runner import evaluate_intake
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.intake.queue import (
    WAITING_FOR_USER,
    WAITING_FOR_WORKER,
    Place,
    Queued,
    Running,
    plan_queue,
    queue_limits,
)
from export_pipeline.domain import eta
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline_tests import REPO_ROOT
from export_pipeline_tests.conftest import clip

REPO = REPO_ROOT
USER, WORKER = WAITING_FOR_USER, WAITING_FOR_WORKER


def test_one_users_exports_wait_for_each_other():
    running = [Running("ann", 30.0)]
    queued = [Queued(k, "ann", 60.0) for k in ("a", "b", "c")]
    assert plan_queue(running, queued, max_runs=2, per_user=1) == {
        "a": Place(1, USER, 30.0),
        "b": Place(2, USER, 90.0),
        "c": Place(3, USER, 150.0),
    }


def test_other_users_wait_for_a_free_worker_in_arrival_order():
    running = [Running("ann", 50.0), Running("bob", 20.0)]
    queued = [Queued("c1", "cat", 10.0), Queued("a2", "ann", 10.0), Queued("d1", "dan", 10.0)]
    assert plan_queue(running, queued, max_runs=2, per_user=1) == {
        "c1": Place(1, WORKER, 20.0),  # bob's export ends first
        "d1": Place(2, WORKER, 30.0),  # then cat's; ann's second still waits for her first
        "a2": Place(3, USER, 50.0),
    }


def test_a_run_that_fits_now_is_next_and_unknown_times_make_unknown_waits():
    queued = [Queued("a", "ann", None), Queued("b", "ann", 10.0), Queued("c", "bob", 5.0)]
    assert plan_queue([Running("zed", None)], queued, max_runs=2, per_user=1) == {
        "a": Place(1, WORKER, 0.0),
        "c": Place(2, WORKER, None),  # after zed's or ann's export: unknown when
        "b": Place(3, USER, None),
    }


@pytest.mark.parametrize(("max_runs", "per_user"), [(None, None), (-1, None)])
def test_without_limits_everything_is_about_to_start(max_runs, per_user):
    queued = [Queued("a", "ann", 1.0), Queued("b", "ann", 1.0)]
    places = plan_queue([Running("ann", 9.0)], queued, max_runs, per_user)
    assert places == {"a": Place(1, WORKER, 0.0), "b": Place(2, WORKER, 0.0)}


def test_limits_of_zero_keep_the_arrival_order_with_unknown_waits():
    places = plan_queue([], [Queued("a", "ann", 1.0), Queued("b", "bob", 1.0)], 0, None)
    assert places == {"a": Place(1, WORKER, None), "b": Place(2, WORKER, None)}


# ---- the sensor, against a real instance with runs in its queue


@pytest.fixture
def queued_instance() -> Iterator:
    """An instance with Dagster's queue and the repo's dagster.yaml concurrency settings."""
    concurrency = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]
    overrides = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "concurrency": concurrency,
    }
    with instance_for_test(overrides=overrides) as instance:
        origin = LoadableTargetOrigin(
            module_name="export_pipeline.definitions",
            attribute="defs",
            working_directory=str(REPO),
        )
        with in_process_test_workspace(instance, origin) as workspace:
            yield instance, workspace


def submit(instance, workspace, defs, request) -> str:
    """What the daemon does with a sensor's run request: create the run and queue it."""
    (location,) = workspace.code_locations
    (repository,) = location.get_repositories().values()
    remote_job = repository.get_full_job("export_video_job")
    run = instance.create_run_for_job(
        defs.resolve_job_def("export_video_job"),
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        tags={**request.tags, "dagster/partition": request.partition_key},
        status=DagsterRunStatus.NOT_STARTED,
    )
    instance.submit_run(run.run_id, workspace)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.QUEUED
    return run.run_id


def report(instance, run_id: str, *events: DagsterEventType) -> None:
    """The run's own lifecycle events, as its launcher and worker report them."""
    job_name = instance.get_run_by_id(run_id).job_name
    for event in events:
        instance.report_dagster_event(
            DagsterEvent(event_type_value=event.value, job_name=job_name), run_id=run_id
        )


def evaluate_queue(defs, instance):
    context = build_sensor_context(
        instance=instance, definitions=defs, resources=dict(defs.resources)
    )
    return defs.resolve_sensor_def("export_queue_sensor")(context)


def places(store, ids) -> list[tuple]:
    return [(store.get(i)["queue_position"], store.get(i)["queue_reason"]) for i in ids]


def test_the_config_of_dagster_yaml_is_read(queued_instance):
    instance, _ = queued_instance
    assert queue_limits(instance) == (2, 1)


def test_one_users_three_queued_exports_move_up_as_the_queue_drains(
    settings, store, queued_instance
):
    instance, workspace = queued_instance
    defs = build_definitions(settings)
    # History: 720p exports of 4 s took 8 s, so each of these is expected to take 8 s.
    for _ in range(3):
        done = store.insert(
            project_id="p", user_id="old", resolution="720p", quality="low",
            clips=[clip("https://cdn.example/a.mp4", 1, duration=4)],
        )  # fmt: skip
        start = utcnow() - timedelta(hours=1)
        store.transition(done, st.QUEUED)
        store.transition(done, st.PROCESSING, processing_started_at=start, run_id="old")
        store.transition(
            done,
            st.COMPLETE,
            completed_at=start + timedelta(seconds=8),
            output_duration_s=4.0,
        )
    ids = [
        store.insert(
            project_id="p", user_id="ann", resolution="720p", quality="low",
            clips=[clip("https://cdn.example/a.mp4", 1, duration=4)],
        )
        for _ in range(3)
    ]  # fmt: skip
    tick = evaluate_intake(instance, defs, cursor=None)
    # Admitted with a first estimate: the processing time alone.
    assert [store.get(i)["eta_s"] for i in ids] == [8, 8, 8]
    runs = [submit(instance, workspace, defs, request) for request in tick.run_requests]

    result = evaluate_queue(defs, instance)
    assert isinstance(result, SkipReason) and "3 queued export(s) updated" in result.skip_message
    # Nothing runs: the first starts next; ann's others wait for it.
    assert places(store, ids) == [(1, WORKER), (2, USER), (3, USER)]
    assert [store.get(i)["eta_s"] for i in ids] == [8, 16, 24]
    assert store.get(ids[2])["estimated_finish_at"] > store.get(ids[1])["estimated_finish_at"]

    # The daemon starts the first; its step claims the row.
    report(instance, runs[0], DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START)
    store.transition(ids[0], st.PROCESSING, run_id=runs[0], processing_started_at=utcnow())
    evaluate_queue(defs, instance)
    assert places(store, ids) == [(None, None), (1, USER), (2, USER)]
    assert store.get(ids[1])["eta_s"] < store.get(ids[2])["eta_s"]

    # The first finishes, the second starts: the third is next.
    report(instance, runs[0], DagsterEventType.RUN_SUCCESS)
    store.transition(ids[0], st.COMPLETE, completed_at=utcnow())
    report(instance, runs[1], DagsterEventType.RUN_STARTING)
    evaluate_queue(defs, instance)
    # The second's run is starting but its step has not claimed the row: out of the queue.
    assert places(store, ids) == [(None, None), (None, None), (1, USER)]

    report(instance, runs[1], DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS)
    report(instance, runs[2], DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START)
    store.transition(ids[2], st.PROCESSING, run_id=runs[2], processing_started_at=utcnow())
    assert places(store, ids)[2] == (None, None)  # cleared as the run starts
    assert isinstance(evaluate_queue(defs, instance), SkipReason)


def test_an_unchanged_queue_writes_nothing(settings, store, queued_instance):
    instance, workspace = queued_instance
    defs = build_definitions(settings)
    ids = [
        store.insert(
            project_id="p", user_id=user, resolution="720p", quality="low",
            clips=[clip("https://cdn.example/a.mp4", 1)],
        )
        for user in ("ann", "bob", "cat")
    ]  # fmt: skip
    tick = evaluate_intake(instance, defs, cursor=None)
    runs = [submit(instance, workspace, defs, request) for request in tick.run_requests]
    report(instance, runs[0], DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START)
    report(instance, runs[1], DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START)
    for i, run_id in zip(ids[:2], runs[:2], strict=True):
        store.transition(i, st.PROCESSING, run_id=run_id, processing_started_at=utcnow())
    assert "1 queued export(s) updated" in evaluate_queue(defs, instance).skip_message
    # Two exports run (the global limit): cat waits for a worker. No history: the built-in
    # rate says how long the two ahead and cat's own take (each a clip to its end).
    assert places(store, ids)[2] == (1, WORKER)
    own = eta.builtin_prior("720p", "mp4", eta.ASSUMED_CLIP_S)
    assert round(own) <= store.get(ids[2])["eta_s"] <= 3 * own + 1
    assert evaluate_queue(defs, instance).skip_message == "queue unchanged"


def test_a_run_that_starts_moves_the_queue_up_without_waiting_for_the_sensor(
    settings, store, queued_instance, cdn
):
    instance, workspace = queued_instance
    defs = build_definitions(settings)
    ids = [
        store.insert(
            project_id="p", user_id="ann", resolution="720p", quality="low",
            clips=[clip(cdn.url("landscape.mp4"), 1)],
        )
        for _ in range(3)
    ]  # fmt: skip
    tick = evaluate_intake(instance, defs, cursor=None)
    runs = [submit(instance, workspace, defs, request) for request in tick.run_requests]
    evaluate_queue(defs, instance)
    assert places(store, ids) == [(1, WORKER), (2, USER), (3, USER)]

    # The first export runs for real (in process, with ann's tag), taking its queued run's
    # place; no queue sensor runs from here on.
    instance.delete_run(runs[0])
    result = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance,
        partition_key=tick.run_requests[0].partition_key,
        tags={"export/user_id": "ann"},
    )
    assert result.success and store.get(ids[0])["status"] == st.COMPLETE
    # Its first step's claim moved the others up while it ran.
    assert places(store, ids) == [(None, None), (1, USER), (2, USER)]
