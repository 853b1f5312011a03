"""The runner object: its binaries take the place of the programs a command names, its
timeout and limits apply to every command unless one says otherwise, and its stop event
kills what runs."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from export_pipeline.defs.resources import MediaTools
from export_pipeline.media.ffmpeg import FFmpeg, progress_share
from export_pipeline.media.runner import FFmpegError, Limits, Stopped


def program(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_its_binaries_replace_the_programs_a_command_names():
    runner = FFmpeg(ffmpeg="/opt/ff/ffmpeg", ffprobe="/opt/ff/ffprobe")
    assert runner.command(["ffmpeg", "-i", "file:a"]) == ["/opt/ff/ffmpeg", "-i", "file:a"]
    assert runner.command(["ffprobe", "file:a"])[0] == "/opt/ff/ffprobe"
    assert runner.command(["sh", "-c", "ffmpeg"]) == ["sh", "-c", "ffmpeg"]  # others as they are


def test_a_command_runs_with_the_runners_binary_and_timeout(tmp_path, spawned):
    slow = FFmpeg(ffmpeg=program(tmp_path, "ffmpeg", "exec sleep 30"), timeout_s=0.3)
    with pytest.raises(FFmpegError, match="timed out after 0.3 s") as caught:
        slow.run(["ffmpeg", "-version"])
    assert caught.value.argv[0].endswith("/ffmpeg") and caught.value.argv[0] != "ffmpeg"
    with pytest.raises(FFmpegError, match="timed out after 0.2 s"):
        slow.run(["ffmpeg"], timeout_s=0.2)  # the command's own timeout wins
    assert all(p.returncode is not None for p in spawned)


def test_capture_answers_with_the_runners_ffprobe(tmp_path):
    runner = FFmpeg(ffprobe=program(tmp_path, "ffprobe", 'echo "{}"; echo oops >&2'))
    done = runner.capture(["ffprobe", "file:x"], timeout_s=10)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"{}\n", "oops\n")


def test_its_stop_event_kills_the_command(tmp_path, spawned):
    stop = threading.Event()
    runner = FFmpeg(ffmpeg=program(tmp_path, "ffmpeg", "exec sleep 30")).stopped_by(stop)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped):
        runner.run(["ffmpeg"])
    assert spawned[0].returncode is not None


def test_progress_share_maps_a_part_onto_the_whole():
    seen: list[float] = []
    share = progress_share(seen.append, 0.25, 0.5)
    share(0.0), share(0.5), share(1.0)
    assert seen == [0.25, 0.5, 0.75]
    assert progress_share(None, 0.0, 1.0) is None


def test_media_tools_build_the_runner_from_their_settings():
    tools = MediaTools(ffmpeg="/x/ffmpeg", ffprobe="/x/ffprobe", ffmpeg_timeout_s=9.0,
                       memory_mb=100, cpu_s=5, max_input_side=640, max_input_pixels=640 * 480)  # fmt: skip
    assert tools.runner() == FFmpeg("/x/ffmpeg", "/x/ffprobe", Limits(100, 5, 640, 640 * 480), 9.0)
