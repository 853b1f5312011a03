from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from export_pipeline.media import runner
from export_pipeline.media.runner import FFmpegError, parse_progress_time, run_ffmpeg

FFMPEG = ["ffmpeg", "-y", "-nostdin", "-hide_banner", "-loglevel", "error"]
PROGRESS = ["-progress", "pipe:1", "-nostats", "-stats_period", "0.1"]


def null_encode(seconds: float, *, realtime: bool = False) -> list[str]:
    """Encode a generated picture to nowhere; `realtime` reads it at 1x speed."""
    source = "testsrc2=size=160x120:rate=25" + (f":duration={seconds}" if seconds else "")
    return [
        *FFMPEG,
        *PROGRESS,
        *(["-re"] if realtime else []),
        "-f",
        "lavfi",
        "-i",
        source,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "null",
        "-",
    ]


def assert_gone(process: subprocess.Popen) -> None:
    assert process.returncode is not None  # reaped by run_ffmpeg
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        ("out_time_us=1500000\n", 1.5),
        ("out_time_ms=2000000", 2.0),  # FFmpeg 5.1: microseconds despite the name
        ("out_time_us=N/A", None),
        ("out_time=00:00:01.500000", None),
        ("progress=continue", None),
        ("frame=12", None),
    ],
)
def test_parse_progress_time(line: str, seconds: float | None):
    assert parse_progress_time(line) == seconds


def test_progress_rises_to_one():
    fractions: list[float] = []
    # Real time, so FFmpeg reports several times (every 0.1 s) before it is done.
    run_ffmpeg(null_encode(1.0, realtime=True), duration_s=1.0, on_progress=fractions.append)
    assert len(fractions) >= 3
    assert fractions == sorted(fractions)
    assert all(0.0 < fraction <= 1.0 for fraction in fractions)
    assert fractions[-1] == 1.0
    assert fractions[0] < 1.0


def test_without_a_duration_progress_only_reports_the_end():
    fractions: list[float] = []
    run_ffmpeg(null_encode(0.2), on_progress=fractions.append)
    assert fractions == [1.0]


def test_error_keeps_stderr(tmp_path: Path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg([*FFMPEG, "-i", str(missing), "-f", "null", "-"])
    error = caught.value
    assert error.returncode not in (0, None)
    assert "No such file or directory" in error.stderr
    assert f"exited with code {error.returncode}" in str(error)
    assert "No such file or directory" in str(error)
    assert error.argv[0] == "ffmpeg"


def test_error_keeps_only_the_tail_of_a_long_stderr():
    noisy = "import sys\nfor i in range(5000): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg([sys.executable, "-c", noisy])
    error = caught.value
    assert error.returncode == 3
    assert len(error.stderr) <= runner.STDERR_LIMIT
    assert error.stderr.rstrip().endswith("line 4999")
    assert "line 4999" in str(error) and "line 4990" not in str(error)


def test_timeout_kills_the_process(spawned):
    with pytest.raises(FFmpegError, match="timed out after 0.5 s") as caught:
        run_ffmpeg(null_encode(0, realtime=True), timeout_s=0.5)
    assert caught.value.returncode is not None
    assert len(spawned) == 1
    assert_gone(spawned[0])


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_exception_from_the_progress_callback_kills_the_process(spawned, exception):
    def explode(fraction: float) -> None:
        raise exception("stop")

    with pytest.raises(exception):
        # Endless real-time input: without the kill this would never return.
        run_ffmpeg(null_encode(0, realtime=True), duration_s=600.0, on_progress=explode)
    assert len(spawned) == 1
    assert_gone(spawned[0])


def test_capture_returns_the_whole_output_and_what_the_process_used(spawned):
    script = "import sys; sys.stdout.write('x' * 200_000); sys.stderr.write('done'); sys.exit(2)"
    result = runner.capture([sys.executable, "-c", script], timeout_s=30)
    assert (result.returncode, len(result.stdout), result.stderr) == (2, 200_000, "done")
    assert result.usage is not None and result.usage.peak_rss_mb > 1
    assert result.over_limit is None
    assert_gone(spawned[0])


def test_capture_kills_the_process_at_its_timeout(spawned):
    with pytest.raises(subprocess.TimeoutExpired):
        runner.capture(null_encode(0, realtime=True), timeout_s=0.5)
    assert len(spawned) == 1
    assert_gone(spawned[0])


def test_setting_stop_kills_the_process(spawned):
    """`stop` is how a render stops the encode running beside a failed one."""
    stop = threading.Event()
    with pytest.raises(runner.Stopped):
        # Endless real-time input; the first progress report sets `stop`.
        run_ffmpeg(null_encode(0, realtime=True), duration_s=600.0,
                   on_progress=lambda fraction: stop.set(), stop=stop)  # fmt: skip
    assert len(spawned) == 1
    assert_gone(spawned[0])


def test_a_quiet_process_is_stopped_too(spawned):
    """No output to wake the reader: `stop` is still seen within STOP_POLL_S."""
    stop = threading.Event()
    waiter = threading.Thread(target=lambda: (wait_for_spawn(spawned), stop.set()))
    waiter.start()
    with pytest.raises(runner.Stopped):
        run_ffmpeg([sys.executable, "-c", "import time; time.sleep(600)"], stop=stop)
    waiter.join()
    assert_gone(spawned[0])


def test_the_deadline_still_holds_with_a_stop_event(spawned):
    with pytest.raises(FFmpegError, match="timed out after 0.5 s"):
        run_ffmpeg([sys.executable, "-c", "import time; time.sleep(600)"], timeout_s=0.5,
                   stop=threading.Event())  # fmt: skip
    assert_gone(spawned[0])


def wait_for_spawn(spawned: list) -> None:
    event = threading.Event()
    while not spawned:
        event.wait(0.01)


def test_a_presigned_url_never_reaches_the_message():
    """A remote input's signature stays out of the error (it reaches the request row and the
    logs): the URL is named without its query string."""
    url = "https://bucket.s3.example.com/clips/sha256/ab.mp4?X-Amz-Signature=deadbeef&X-Amz-Expires=3600"
    error = FFmpegError(
        ["ffmpeg", "-i", url], 1, f"{url}: Server returned 403 Forbidden (access denied)\n"
    )
    assert "deadbeef" not in str(error) and "deadbeef" not in error.stderr
    assert "deadbeef" not in " ".join(error.argv)
    assert "https://bucket.s3.example.com/clips/sha256/ab.mp4?..." in str(error)
    assert "403 Forbidden" in str(error)


def test_a_remote_input_from_a_server_without_range_requests_fails_loudly(tmp_path):
    """A RemoteFile is read with range requests (S3 answers them: test_pipeline_s3 renders
    chunks that way). From a server that ignores them, seeking in the clip fails the run,
    which is retried: never a segment made of the wrong bytes."""
    from fractions import Fraction

    from export_pipeline.cli.demo import serve_directory
    from export_pipeline.media.encoding import encode_settings
    from export_pipeline.media.inputs import RemoteFile
    from export_pipeline.media.samples import make_sample_clip
    from export_pipeline.media.segment import segment_argv
    from export_pipeline_tests.media.tools import segment

    make_sample_clip(tmp_path / "clip.mp4", width=320, height=240, fps=Fraction(25), duration=4.0)
    settings = encode_settings("720p", "16:9", "low", Fraction(25), preset="ultrafast")
    with serve_directory(tmp_path) as base:  # http.server: no Range support
        job = segment(RemoteFile(f"{base}/clip.mp4"), 2.0, 1.0, video=tmp_path / "v.mp4",
                      audio=tmp_path / "a.wav", length=4.0, width=320, height=240)  # fmt: skip
        with pytest.raises(FFmpegError):
            run_ffmpeg(segment_argv(job, settings), duration_s=1.0)
    with pytest.raises(ValueError):
        RemoteFile("file:///etc/passwd")


def test_capture_stops_when_told(spawned):
    """A measuring run (ffprobe, the loudness pass) stops within the poll interval of its
    `stop` event, its process gone: a canceled audio track does not wait for the measure."""
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(runner.Stopped):  # `sleep 30` would end on its own, not in Stopped
        runner.capture(["sleep", "30"], timeout_s=60, stop=stop)
    assert len(spawned) == 1 and spawned[0].returncode is not None  # killed and reaped
