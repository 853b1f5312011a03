from datetime import timedelta

import pytest
from dagster import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from export_pipeline.defs.export.supervision import reconcile
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline_tests.conftest import clip


def processing_row(store, run_id: str | None) -> dict:
    request_id = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )  # fmt: skip
    store.transition(request_id, st.QUEUED)
    store.transition(request_id, st.PROCESSING, run_id=run_id)
    return store.get(request_id)


def run(instance, status: DagsterRunStatus, **tags):
    return create_run_for_test(
        instance,
        job_name="export_video_job",
        status=status,
        tags={"dagster/partition": "exp-1", **tags},
    )


def test_a_started_run_without_heartbeat_is_failed_for_dagster_to_retry(store, instance):
    dead = run(instance, DagsterRunStatus.STARTED)
    row = processing_row(store, dead.run_id)
    outcome = reconcile(instance, store, row, 60)
    assert "sent no heartbeat for 60 s" in outcome
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    # The row is left to the failure path (run retry or the failure sensor).
    assert store.get(row["id"])["status"] == st.PROCESSING


@pytest.mark.parametrize(
    ("run_status", "tags", "row_status", "message"),
    [
        (DagsterRunStatus.FAILURE, {}, st.FAILED, "failed; see its logs"),
        (DagsterRunStatus.FAILURE, {"dagster/will_retry": "true"}, st.PROCESSING, None),
        (DagsterRunStatus.CANCELED, {}, st.CANCELED, "was canceled"),
        (DagsterRunStatus.SUCCESS, {}, st.FAILED, "ended without publishing"),
        (DagsterRunStatus.STARTING, {}, st.PROCESSING, None),
    ],
)
def test_rows_of_finished_runs_are_reconciled(
    store, instance, run_status, tags, row_status, message
):
    finished = run(instance, run_status, **tags)
    row = processing_row(store, finished.run_id)
    outcome = reconcile(instance, store, row, 60)
    after = store.get(row["id"])
    assert after["status"] == row_status
    if message:
        assert message in outcome and message in after["error_message"]
    else:
        assert outcome is None


def test_rows_without_a_run_are_left_alone(store, instance):
    row = processing_row(store, None)
    assert reconcile(instance, store, row, 60) is None


def test_stalled_query_uses_the_heartbeat(store):
    row = processing_row(store, "r1")
    assert [r["id"] for r in store.stalled(utcnow() + timedelta(seconds=5))] == [row["id"]]
    assert store.stalled(utcnow() - timedelta(seconds=60)) == []
    assert store.touch(row["id"], "r1") and not store.touch(row["id"], "other")
