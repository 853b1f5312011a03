"""Backfills that re-export old projects: with the real daemon, an exported partition is
backfilled with Dagster's own CLI after every clip URL has expired (the CDN answers 404);
the run uses the archived clips and the row goes back through processing to complete."""

import subprocess
import time

import pytest
from dagster import DagsterRunStatus

from export_pipeline.domain import status as st
from export_pipeline_tests.cdn import status
from export_pipeline_tests.daemon import BIN, REPO, DaemonWorld, wait_for
from export_pipeline_tests.e2e.test_pipeline import ffprobe

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path, new_postgres_db):
    world = DaemonWorld(
        tmp_path,
        new_postgres_db(),
        new_postgres_db(),
        {"EXPORT_STORAGE_ROOT": str(tmp_path / "storage")},
    )
    yield world.start()
    world.stop()


def test_backfill_reexports_after_the_cdn_urls_expired(world, cdn):
    request_id = world.request("erin", cdn.url("landscape.mp4"), cdn.url("portrait.mp4"))
    (first,) = world.wait_rows([request_id], lambda r: r["status"] in st.TERMINAL, 240, "export")
    assert first["status"] == st.COMPLETE, world.log_tail()
    hits = dict(cdn.hits)
    for name in ("landscape.mp4", "portrait.mp4"):
        cdn.fail(name, status(404))  # an hour later: Replicate deleted the clips
    time.sleep(1.1)  # processing_started_at has whole-second precision on SQLite backends

    # What an operator runs (or does from the UI: Materialize -> select partitions).
    subprocess.run(
        [str(BIN / "dagster"), "job", "backfill", "-w", str(REPO / "workspace.yaml"),
         "-j", "export_video_job", "--partitions", f"exp-{request_id}", "--noprompt"],
        cwd=REPO, env=world.env, check=True, capture_output=True, text=True,
    )  # fmt: skip

    def backfill_done():
        runs = world.runs_for(request_id)
        return len(runs) == 2 and runs[-1].dagster_run.is_finished and runs

    first_run, backfill = wait_for(backfill_done, 240, "the backfill run")[-2:]
    assert backfill.dagster_run.status == DagsterRunStatus.SUCCESS, world.log_tail()
    # the backfill run queues behind the user's other exports like a sensor-launched one
    assert backfill.dagster_run.tags["export/user_id"] == "erin"
    assert backfill.dagster_run.tags["export/request_id"] == str(request_id)
    row = world.store.get(request_id)
    assert row["status"] == st.COMPLETE and row["run_id"] == backfill.dagster_run.run_id
    assert row["processing_started_at"] > first["processing_started_at"]  # went through processing
    assert row["completed_at"] > first["completed_at"]
    assert dict(cdn.hits) == {**hits}  # the expired URLs were never needed
    video = ffprobe(world.root / "storage" / "videos" / f"exp-{request_id}.mp4")
    assert abs(float(video["format"]["duration"]) - 4.0) < 0.1
