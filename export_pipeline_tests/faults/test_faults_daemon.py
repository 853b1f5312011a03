"""Fault injection with the real daemon: a run worker killed with SIGKILL, a cancel in the
middle of encoding, and a load test with faults (the product doc's pre-launch check)."""

import os
import signal
import stat
from collections import Counter
from pathlib import Path

import pytest
from dagster import DagsterRunStatus

from export_pipeline.domain import status as st
from export_pipeline_tests.cdn import serve_normally, status
from export_pipeline_tests.daemon import DaemonWorld, wait_for

pytestmark = pytest.mark.e2e


def hanging_ffmpeg(tmp_path: Path) -> tuple[Path, Path]:
    """An ffmpeg whose first encode hangs (as a long encode would), after writing its own pid
    and its parent's (the run worker) to a marker file; later calls are the real ffmpeg."""
    marker = tmp_path / "encode-started"
    script = tmp_path / "ffmpeg-hangs-once"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *libx264*)\n'
        f'  if [ ! -e "{marker}" ]; then echo "$$ $PPID" > "{marker}.tmp";'
        f' mv "{marker}.tmp" "{marker}"; exec sleep 300; fi;;\n'
        "esac\n"
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, marker


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def world_factory(tmp_path, new_postgres_db):
    worlds = []

    def make(**env) -> DaemonWorld:
        world = DaemonWorld(
            tmp_path,
            new_postgres_db(),
            new_postgres_db(),
            {"EXPORT_STORAGE_ROOT": str(tmp_path / "storage"), **env},
            {"run_monitoring": {"enabled": True, "poll_interval_seconds": 2}},
        )
        worlds.append(world)
        return world.start()

    yield make
    for world in worlds:
        world.stop()


def start_hanging_encode(world_factory, cdn, tmp_path, user: str, *clips: str):
    """A daemon world whose first encode hangs, with fast heartbeats and a short stall
    timeout; returns it with the request and the (encoder, run worker) pids once encoding."""
    ffmpeg, marker = hanging_ffmpeg(tmp_path)
    world = world_factory(
        EXPORT_FFMPEG=str(ffmpeg),
        EXPORT_HEARTBEAT_S="1",
        EXPORT_STALL_TIMEOUT_S="6",
        EXPORT_SWEEPER_INTERVAL_S="2",
    )
    request_id = world.request(user, *[cdn.url(name) for name in clips])
    wait_for(marker.exists, 120, "the first encode to start")
    encoder_pid, worker_pid = map(int, marker.read_text().split())
    return world, request_id, encoder_pid, worker_pid


def assert_resumed_from_the_failed_step(world, request_id, cdn, tmp_path, *clips: str):
    (row,) = world.wait_rows(
        [request_id], lambda r: r["status"] in st.TERMINAL, 240, "the resumed run"
    )
    assert row["status"] == st.COMPLETE, (row, world.log_tail())
    assert row["retry_count"] == 1  # Dagster's run retry counted as an attempt

    first, retry = world.finished_runs(request_id)
    assert first.dagster_run.status == DagsterRunStatus.FAILURE
    assert retry.dagster_run.status == DagsterRunStatus.SUCCESS
    assert retry.dagster_run.parent_run_id == first.dagster_run.run_id
    assert row["run_id"] == retry.dagster_run.run_id
    # the clips were downloaded once: the retry resumed from the failed step
    assert all(cdn.hits[name] == 1 for name in clips), dict(cdn.hits)
    assert list(world.work_dir.iterdir()) == []  # the dead attempt's scratch was cleared
    assert (tmp_path / "storage" / "videos" / f"exp-{request_id}.mp4").is_file()


def test_killed_worker_is_detected_and_the_run_resumes(world_factory, cdn, tmp_path):
    clips = ("landscape.mp4", "portrait.mp4")
    world, request_id, encoder_pid, worker_pid = start_hanging_encode(
        world_factory, cdn, tmp_path, "carol", *clips
    )
    os.kill(worker_pid, signal.SIGKILL)  # the run worker dies without a word
    wait_for(lambda: not alive(encoder_pid), 10, "FFmpeg to die with its worker")
    assert_resumed_from_the_failed_step(world, request_id, cdn, tmp_path, *clips)


def test_daemon_crash_mid_encode_is_recovered_after_restart(world_factory, cdn, tmp_path):
    """The host dies: daemon, code server, run worker and FFmpeg go at once. A new daemon
    must not leave the row `processing`: the stalled run is failed and retried from its step."""
    world, request_id, encoder_pid, worker_pid = start_hanging_encode(
        world_factory, cdn, tmp_path, "erin", "landscape.mp4"
    )
    world.crash_and_restart()
    wait_for(lambda: not alive(worker_pid) and not alive(encoder_pid), 10, "the crash")
    assert world.store.get(request_id)["status"] == st.PROCESSING  # as the crash left it
    assert_resumed_from_the_failed_step(world, request_id, cdn, tmp_path, "landscape.mp4")


def test_cancel_mid_encode(world_factory, cdn, tmp_path):
    ffmpeg, marker = hanging_ffmpeg(tmp_path)
    world = world_factory(EXPORT_FFMPEG=str(ffmpeg))
    request_id = world.request("dave", cdn.url("landscape.mp4"))
    wait_for(marker.exists, 120, "the encode to start")
    encoder_pid, _ = map(int, marker.read_text().split())
    assert world.store.get(request_id)["status"] == st.PROCESSING

    world.store.request_cancel(request_id)  # what the app does
    (row,) = world.wait_rows([request_id], lambda r: r["status"] == st.CANCELED, 30, "cancel")
    assert "canceled at the app's request" in row["error_message"]
    (run,) = world.runs_for(request_id)
    wait_for(
        lambda: world.runs_for(request_id)[0].dagster_run.status == DagsterRunStatus.CANCELED,
        30,
        "the run to be canceled",
    )
    wait_for(lambda: not alive(encoder_pid), 10, "FFmpeg to be killed")
    wait_for(lambda: list(world.work_dir.iterdir()) == [], 10, "temporary files to go")
    assert not (tmp_path / "storage" / "videos").exists()
    assert world.store.get(request_id)["status"] == st.CANCELED


def test_load_with_faults(world_factory, cdn):
    """10 exports from 10 users and 5 from one user, with faults: all end as expected."""
    world = world_factory()
    expected: dict[int, str] = {}
    for n in range(10):
        name = f"user{n}.mp4"
        (cdn.root / name).write_bytes((cdn.root / "landscape.mp4").read_bytes())
        if n in (1, 2):
            cdn.fail(name, status(503), serve_normally)  # transient: retried, then fine
        if n == 3:
            cdn.fail(name, status(404))  # expired: fails at once
        request_id = world.request(f"user-{n}", cdn.url(name))
        if n == 4:
            world.store.request_cancel(request_id)  # the user deleted the project at once
        expected[request_id] = {3: st.FAILED, 4: st.CANCELED}.get(n, st.COMPLETE)
    for _ in range(5):
        expected[world.request("busy-user", cdn.url("portrait.mp4"))] = st.COMPLETE

    ids = list(expected)
    rows = world.wait_rows(ids, lambda r: r["status"] in st.TERMINAL, 600, "the whole load")
    assert {r["id"]: r["status"] for r in rows} == expected, world.log_tail()
    retried = [r for r in rows if r["retry_count"]]
    assert len(retried) == 2 and all(r["status"] == st.COMPLETE for r in retried)
    failed = next(r for r in rows if r["status"] == st.FAILED)
    assert "expired or was removed" in failed["error_message"]

    runs = Counter(int(r.dagster_run.tags["export/request_id"]) for r in world.all_runs())
    canceled = next(i for i, s in expected.items() if s == st.CANCELED)
    assert canceled not in runs  # canceled before its run was requested
    assert all(runs[i] == 1 for i in ids if i != canceled), runs  # nothing run twice
    assert list(world.work_dir.iterdir()) == []


def test_cancel_during_the_fan_out_stops_every_segment_process(world_factory, cdn, tmp_path):
    """Segments in processes of their own (multiprocess executor): the app's cancel ends the
    run, and every segment step's FFmpeg, in whichever process, is killed."""
    started = tmp_path / "encodes"
    started.mkdir()
    script = tmp_path / "ffmpeg-every-encode-hangs"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *libx264*) echo $$ > "{started}/$$"; exec sleep 300;; esac\n'
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    world = world_factory(
        EXPORT_FFMPEG=str(script), EXPORT_EXECUTOR="multiprocess", EXPORT_MAX_CONCURRENT_STEPS="2"
    )
    names = ("landscape.mp4", "portrait.mp4", "classic.mp4")
    request_id = world.request("fay", *[cdn.url(n) for n in names])
    wait_for(lambda: len(list(started.iterdir())) == 2, 180, "two segments encoding at once")
    encoders = [int(p.read_text()) for p in started.iterdir()]

    world.store.request_cancel(request_id)
    world.wait_rows([request_id], lambda r: r["status"] == st.CANCELED, 30, "cancel")
    wait_for(
        lambda: world.runs_for(request_id)[0].dagster_run.status == DagsterRunStatus.CANCELED,
        60,
        "the run to be canceled",
    )
    wait_for(lambda: not any(alive(pid) for pid in encoders), 15, "every FFmpeg to be killed")
    assert len(list(started.iterdir())) == 2  # the third segment never started encoding
    wait_for(lambda: list(world.work_dir.iterdir()) == [], 15, "temporary files to go")
