"""Two segments encoded at once: they really overlap, the export is the same as one after
another (frames, sync), and no FFmpeg outlives a failure or an interrupted step.

FFmpeg here is the real one behind a small wrapper script that logs when each run starts
and ends (so overlap is read from the order of events, not from timings) and that stands in
for a clip that takes forever (`sleep`), so stopping can be checked without waiting."""

from __future__ import annotations

import os
import stat
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings, frame_count
from export_pipeline.media.execute import segment_workers
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.plan import RenderOptions
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline.media.runner import FFmpegError
from export_pipeline.media.samples import make_sample_clip


class Interrupted(BaseException):
    """Like Dagster's DagsterExecutionInterruptedError: not an Exception."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Clip]:
    directory = tmp_path_factory.mktemp("clips")
    clips = []
    for n in range(4):
        path = make_sample_clip(
            directory / f"clip-{n}.mp4", width=320, height=240, fps=Fraction(25), duration=1.0,
            tone_hz=300 + 100 * n,
        )  # fmt: skip
        clips.append(Clip(path, 0.0, None, probe(path), f"clip {n + 1}"))
    return clips


@pytest.fixture
def wrapper(tmp_path) -> tuple[Path, Path]:
    """An `ffmpeg` that logs "start"/"end" lines and sleeps instead of reading a slow clip."""
    log = tmp_path / "runs.log"
    script = tmp_path / "ffmpeg-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *slow-clip*) exec sleep 600;; esac\n'
        f'echo start >> "{log}"\n'
        'ffmpeg "$@"; code=$?\n'
        f'echo end >> "{log}"\n'
        "exit $code\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def most_at_once(log: Path) -> int:
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    return peak


def assert_all_gone(processes: list[subprocess.Popen]) -> None:
    assert processes
    for process in processes:
        assert process.returncode is not None  # reaped
        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)


def settings():
    return encode_settings("720p", "16:9", "low", Fraction(25), preset="ultrafast", threads=2)


def test_the_default_is_two_at_once_with_two_cpus(monkeypatch):
    monkeypatch.setattr("export_pipeline.media.execute.available_cpus", lambda: 2)
    assert segment_workers() == 2
    monkeypatch.setattr("export_pipeline.media.execute.available_cpus", lambda: 16)
    assert segment_workers() == 2
    monkeypatch.setattr("export_pipeline.media.execute.available_cpus", lambda: 1)
    assert segment_workers() == 1
    assert segment_workers(3) == 3


@pytest.mark.parametrize("parallel", [1, 2])
def test_segments_run_side_by_side_and_join_in_order(inputs, wrapper, tmp_path, parallel):
    script, log = wrapper
    output = tmp_path / "out.mp4"
    progress: list[float] = []
    result = render_video(
        inputs, settings(), tmp_path / "work", output, RenderOptions(parallel=parallel),
        ffmpeg=FFmpeg(ffmpeg=str(script)), on_progress=progress.append,
    )  # fmt: skip
    # Four segments' pictures, the audio track (their four sounds, one after another, and
    # its encode) and the join; at most `parallel` at once, and that many really were.
    assert log.read_text().split().count("start") == 4 + 4 + 1 + 1
    assert most_at_once(log) == parallel
    assert result.frames == 4 * frame_count(1.0, Fraction(25))
    assert progress == sorted(progress) and progress[-1] == 1.0
    # In order: each clip's tone where it belongs (300, 400, 500, 600 Hz).
    for n in range(4):
        assert dominant_tone(output, start=n + 0.2, seconds=0.6) == pytest.approx(
            300 + 100 * n, rel=0.03
        )


def dominant_tone(path: Path, start: float, seconds: float) -> float:
    """The tone's frequency in a stretch of the audio, from zero crossings."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", str(start), "-t", str(seconds), "-i", str(path),
         "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    samples = memoryview(done.stdout).cast("h")
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))  # noqa: B905
    return crossings / 2 / (len(samples) / 48000)


def test_a_failing_segment_stops_the_one_beside_it(inputs, wrapper, spawned, tmp_path):
    """Clip 1 would take ten minutes; clip 2 is gone: the error about clip 2 comes at once,
    and clip 1's encodes (its pictures, and the audio track reading its sound) are killed
    rather than left running."""
    script, _ = wrapper
    slow = tmp_path / "slow-clip.mp4"
    slow.write_bytes(inputs[0].path.read_bytes())
    clips = [
        Clip(slow, 0.0, None, inputs[0].info, "clip 1"),
        Clip(tmp_path / "deleted.mp4", 0.0, None, inputs[1].info, "clip 2"),
    ]
    with pytest.raises(FFmpegError) as caught:
        render_video(clips, settings(), tmp_path / "work", tmp_path / "out.mp4",
                     RenderOptions(parallel=3), ffmpeg=FFmpeg(ffmpeg=str(script)))  # fmt: skip
    assert "while encoding clip 2" in caught.value.__notes__
    assert len(spawned) == 3
    assert_all_gone(spawned)
    assert list((tmp_path / "work").iterdir()) == []


def test_an_interrupted_render_kills_every_encode(inputs, wrapper, spawned, tmp_path):
    """A canceled run interrupts the step's thread (a BaseException, raised here from the
    progress callback once both encodes are running): neither FFmpeg survives it."""
    script, _ = wrapper
    clips = []
    for n in range(3):
        slow = tmp_path / f"slow-clip-{n}.mp4"
        slow.write_bytes(inputs[n].path.read_bytes())
        clips.append(Clip(slow, 0.0, None, inputs[n].info, f"clip {n + 1}"))

    def interrupt(fraction: float) -> None:
        if len(spawned) == 2:
            raise Interrupted()

    with pytest.raises(Interrupted):
        render_video(clips, settings(), tmp_path / "work", tmp_path / "out.mp4",
                     RenderOptions(parallel=2), ffmpeg=FFmpeg(ffmpeg=str(script)),
                     on_progress=interrupt)  # fmt: skip
    assert len(spawned) == 2  # the third never started
    assert_all_gone(spawned)
