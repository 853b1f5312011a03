"""The fan-out under a real `dagster-daemon` with the multiprocess executor: one export's
segments run as steps in processes of their own, side by side, and the row's progress adds
them up without ever going back."""

import stat

import pytest
from dagster import DagsterEventType, DagsterInstance

from export_pipeline.domain import status as st
from export_pipeline_tests.daemon import DaemonWorld, wait_for
from export_pipeline_tests.e2e.test_pipeline import ffprobe

pytestmark = pytest.mark.e2e


def test_the_multiprocess_executor_spreads_one_export_over_processes(
    tmp_path, new_postgres_db, cdn
):
    # The sample clips encode in well under a second, less than a step process takes to
    # start: each encode here takes 3 s more, as a long segment would.
    slow = tmp_path / "ffmpeg-slow-encodes"
    slow.write_text('#!/bin/sh\ncase "$*" in *libx264*) sleep 3;; esac\nexec ffmpeg "$@"\n')
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    env = {
        "EXPORT_EXECUTOR": "multiprocess",
        "EXPORT_MAX_CONCURRENT_STEPS": "2",
        "EXPORT_FFMPEG": str(slow),
    }
    world = DaemonWorld(tmp_path, new_postgres_db(), new_postgres_db(), env).start()
    try:
        names = ("landscape.mp4", "portrait.mp4", "classic.mp4")
        request_id = world.request("ann", *[cdn.url(n) for n in names])
        seen: list[int] = []

        def ended():
            row = world.store.get(request_id)
            seen.append(row["progress"])
            return row if row["status"] in st.TERMINAL else None

        row = wait_for(ended, 300, "the export", poll_s=0.2)
        assert row["status"] == st.COMPLETE, (row, world.log_tail())
        assert seen == sorted(seen), seen  # progress only rose, summed over processes
        (record,) = world.runs_for(request_id)
        with DagsterInstance.from_config(str(world.home)) as instance:
            logs = instance.all_logs(record.dagster_run.run_id)
    finally:
        world.stop()

    starts, ends, pids = {}, {}, {}
    for entry in logs:
        event = entry.dagster_event
        if event is None or not (entry.step_key or "").startswith("encoded_video."):
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[entry.step_key], pids[entry.step_key] = entry.timestamp, event.pid
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            ends[entry.step_key] = entry.timestamp
    segments = sorted(k for k in starts if "encoded_video_segment[" in k)
    assert segments == [  # the audio track, and a step per segment's pictures
        "encoded_video.encoded_video_segment[audio]",
        *(f"encoded_video.encoded_video_segment[segment_{n:04d}]" for n in range(3)),
    ]
    # Each step in a process of its own, two at once.
    assert len({pids[k] for k in starts}) == len(starts)
    spans = sorted((starts[k], ends[k]) for k in segments)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
    video = world.root / "home" / "storage" / "videos" / f"exp-{request_id}.mp4"
    assert float(ffprobe(video)["format"]["duration"]) > 4.0
