"""The mutation corpus: damaged clip files through `probe_and_check` and a one-segment render.

Three small real clips (MP4 with the index at the end, MP4 with faststart, Matroska) are
damaged in deterministic ways (`mutants.py`). For every mutant the outcome must be one a row
can show: the segment rendered (with exactly the frames and samples expected), or a clean
InvalidMedia / FFmpegError / ClipError with a message. Never another exception, never a
command running past its timeout, no file left in the temp dir or next to the clip, no
FFmpeg process left behind.

One round of operators (every operator once per clip: 44 mutants) runs by default;
`EXPORT_FUZZ_MUTANTS=500` runs 500 (further rounds use new seeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from export_pipeline.media import probe as probe_module
from export_pipeline.media.clip import Clip, ClipError
from export_pipeline.media.encoding import audio_sample_count, encode_settings, frame_count
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.frame import choose_frame_rate
from export_pipeline.media.probe import InvalidMedia, probe, probe_and_check
from export_pipeline.media.runner import FFmpegError, run_ffmpeg
from export_pipeline.media.samples import make_sample_clip
from export_pipeline.media.segment import render_segment
from export_pipeline_tests.fuzz.mutants import ROTATE_KEY, ROTATE_VALUE, Mutant, mutants

BASE_CLIPS = {"plain.mp4": "mp4", "faststart.mp4": "mp4", "clip.mkv": "matroska"}
COUNT = int(os.environ.get("EXPORT_FUZZ_MUTANTS") or 0) or len(mutants(BASE_CLIPS))
# Per command: short, because the clips are one second long; a hang shows as a timeout.
PROBE_TIMEOUT_S = 20.0
RENDER_TIMEOUT_S = 30.0
# probe_and_check's commands (probe, decode check, packet listing), the render and the
# checks of its result, with room for a loaded machine.
MUTANT_LIMIT_S = 3 * PROBE_TIMEOUT_S + RENDER_TIMEOUT_S + 20
LABEL = "clip 1 (scene 1)"


def _param(mutant: Mutant):
    return pytest.param(mutant, id=mutant.name)


@pytest.fixture(scope="module")
def base_clips(tmp_path_factory) -> dict[str, bytes]:
    """The three clips' bytes: 1 s of 320x240 at 24 fps with stereo AAC, bit-exact."""
    directory = tmp_path_factory.mktemp("base-clips")
    plain = make_sample_clip(directory / "plain.mp4", width=320, height=240, fps=24, duration=1.0)
    copy = ["ffmpeg", "-y", "-nostdin", "-v", "error", "-i", f"file:{plain}", "-c", "copy"]
    faststart, mkv = directory / "faststart.mp4", directory / "clip.mkv"
    run_ffmpeg(
        [*copy, "-movflags", "+faststart", "-fflags", "+bitexact", f"file:{faststart}"],
        timeout_s=60,
    )
    # A stream tag the rotate-tag mutants rename to "rotate" (see mutants.py).
    tag = f"{ROTATE_KEY.decode()}={ROTATE_VALUE.decode()}"
    run_ffmpeg([*copy, "-metadata:s:v:0", tag, "-fflags", "+bitexact", f"file:{mkv}"], timeout_s=60)
    return {path.name: path.read_bytes() for path in (plain, faststart, mkv)}


def _ffmpeg_children() -> list[str]:
    """FFmpeg and FFprobe processes (running or not yet reaped) whose parent is this one."""
    me, found = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        state, ppid = text[text.rfind(")") + 2 :].split()[:2]
        if ppid == me and name in ("ffmpeg", "ffprobe"):
            found.append(f"{name} (pid {stat.parent.name}, state {state})")
    return found


def _stream(path: Path, selector: str, entries: str) -> dict:
    argv = ["ffprobe", "-v", "error", "-select_streams", selector, "-count_packets"]
    argv += ["-show_entries", f"stream={entries}", "-of", "json", f"file:{path}"]
    result = subprocess.run(argv, capture_output=True, check=True, timeout=PROBE_TIMEOUT_S)
    streams = json.loads(result.stdout)["streams"]
    assert streams, f"the rendered {path.name} has no {selector} stream"
    return streams[0]


def _failed(error: Exception) -> str:
    message = str(error).strip()
    assert message, f"{type(error).__name__} without a message"
    return f"failed: {message}"


def probe_and_render(clip: Path, video: Path, audio: Path) -> str:
    """What the clip and encode steps do with one clip: "complete" or "failed: <message>";
    any other exception propagates (a finding)."""
    try:
        info = probe_and_check(clip)
    except InvalidMedia as error:
        return _failed(error)
    rate = choose_frame_rate([info.fps])
    settings = encode_settings("720p", "16:9", "low", rate, preset="ultrafast")
    inp = Clip(path=clip, trim_start=0.0, duration=2.0, info=info, label=LABEL)
    # Checked before rendering: a segment far longer than its clip could fill the disk
    # (its WAV alone is 192 kB per second) before the render's timeout stops it.
    used = min(info.duration - inp.trim_start, inp.duration)
    planned = frame_count(used, rate) / rate
    assert planned <= used + 1, (
        f"the segment of {used:g} s of clip would last {float(planned):g} s "
        f"(frame rate {rate} from the clip's {info.fps})"
    )
    try:
        frames = render_segment(
            inp, settings, video, audio, ffmpeg=FFmpeg(timeout_s=RENDER_TIMEOUT_S)
        )
    except (FFmpegError, ClipError) as error:
        return _failed(error)
    made = _stream(video, "v:0", "codec_name,width,height,nb_read_packets")
    assert (made["width"], made["height"]) == (settings.width, settings.height), made
    assert int(made["nb_read_packets"]) == frames, f"{made} but {frames} frames expected"
    sound = _stream(audio, "a:0", "sample_rate,channels,duration_ts")
    assert int(sound["duration_ts"]) == audio_sample_count(frames, settings), sound
    return "complete"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A temp dir of our own for Python and for FFmpeg, to see what is left in it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # Bounded waits; raising=False: the constants' names belong to probe.py.
    monkeypatch.setattr(probe_module, "PROBE_TIMEOUT_S", PROBE_TIMEOUT_S, raising=False)
    monkeypatch.setattr(probe_module, "DECODE_TIMEOUT_S", PROBE_TIMEOUT_S, raising=False)
    return scratch


@pytest.mark.timeout(int(MUTANT_LIMIT_S) + 60)
@pytest.mark.parametrize("mutant", [_param(m) for m in mutants(BASE_CLIPS, COUNT)])
def test_mutant_fails_cleanly_or_renders(mutant: Mutant, base_clips, private_tmp, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    clip = work / f"{mutant.name}{Path(mutant.clip).suffix}"
    clip.write_bytes(mutant.apply(base_clips[mutant.clip]))
    video, audio = work / "segment.mp4", work / "segment.wav"

    started = time.monotonic()
    try:
        outcome = probe_and_render(clip, video, audio)
    except Exception as error:
        error.add_note(f"mutant {mutant.name}, kept at {clip}")
        raise
    elapsed = time.monotonic() - started

    assert outcome == "complete" or outcome.startswith("failed: "), outcome
    assert elapsed < MUTANT_LIMIT_S, f"{mutant.name} took {elapsed:.1f} s ({outcome})"
    assert not _ffmpeg_children(), f"FFmpeg left running after {mutant.name}"
    assert not list(private_tmp.iterdir()), f"temp files left: {list(private_tmp.iterdir())}"
    # The segment files are the render's own outputs (the caller's to remove on failure).
    left = {path.name for path in work.iterdir()} - {clip.name, video.name, audio.name}
    assert not left, f"files left next to the clip: {sorted(left)}"


def test_base_clips_render(base_clips, private_tmp, tmp_path):
    """The unmutated clips complete: a mutant's failure is the mutation's doing."""
    for name, data in base_clips.items():
        clip = tmp_path / name
        clip.write_bytes(data)
        outcome = probe_and_render(clip, tmp_path / f"{name}.seg.mp4", tmp_path / f"{name}.wav")
        assert outcome == "complete", (name, outcome)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-1e400"])
def test_matroska_rotate_tag_that_is_not_a_number(value, base_clips, tmp_path):
    """A Matroska stream tag is free text: `rotate=nan` must not crash probe."""
    data = base_clips["clip.mkv"].replace(ROTATE_KEY, b"rotate", 1)
    clip = tmp_path / "rotate.mkv"
    clip.write_bytes(data.replace(ROTATE_VALUE, value.encode().ljust(len(ROTATE_VALUE)), 1))
    try:
        info = probe(clip)
    except InvalidMedia:
        return
    assert info.width == 320 and info.height == 240, info


def test_matroska_without_its_cues_renders_every_frame(base_clips, private_tmp, tmp_path):
    """A WebM/Matroska download that lost only its end (the Cues index after the last
    Cluster): every frame is in the file, so the segment must have them all, or fail."""
    data = base_clips["clip.mkv"]
    clip = tmp_path / "no-cues.mkv"
    clip.write_bytes(data[: data.rindex(b"\x1c\x53\xbb\x6b")])  # cut at the Cues element
    outcome = probe_and_render(clip, tmp_path / "segment.mp4", tmp_path / "segment.wav")
    assert outcome == "complete" or outcome.startswith("failed: "), outcome


def test_mp4_with_a_zero_time_scale_gets_a_sane_frame_rate(base_clips, private_tmp, tmp_path):
    data = base_clips["plain.mp4"]
    at = data.index(b"mdhd") + 4 + 12  # version+flags, creation and modification times
    clip = tmp_path / "timescale-0.mp4"
    clip.write_bytes(data[:at] + bytes(4) + data[at + 4 :])
    outcome = probe_and_render(clip, tmp_path / "segment.mp4", tmp_path / "segment.wav")
    assert outcome == "complete" or outcome.startswith("failed: "), outcome


def test_mutants_are_deterministic(base_clips):
    """A mutant's name is enough to reproduce it."""
    some = mutants(BASE_CLIPS, COUNT)[:: max(1, COUNT // 7)]
    for mutant in some:
        data = base_clips[mutant.clip]
        assert mutant.apply(data) == mutant.apply(data), mutant.name
