"""A/V sync at every seam: each clip starts with a white flash and a beep at the same
instant; in the export, every flash and its beep must still start together (within one
output frame), at the seam where the clip begins.

The clips mix frame rates (24, 25, 30 and 30000/1001) and sample rates (22.05, 44.1 and
48 kHz), one is trimmed to a flash in its middle, one is silent; segments are encoded two at
once, as in production."""

from __future__ import annotations

import subprocess
from array import array
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media import clip as media
from export_pipeline.media.encoding import encode_settings, frame_count
from export_pipeline.media.frame import choose_frame_rate
from export_pipeline.media.plan import RenderOptions
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video

FLASH_S = 0.1  # flash and beep length
RATE = 48000  # of the export's audio


@dataclass(frozen=True)
class Clip:
    fps: str
    sample_rate: int | None  # None: no audio track
    seconds: float
    marks: tuple[float, ...] = (0.0,)  # where flash and beep start
    trim_start: float = 0.0


CLIPS = [
    Clip("24", 44100, 1.0),
    Clip("30", 48000, 1.2),
    Clip("25", 22050, 0.8),
    Clip("30000/1001", 48000, 1.0),
    Clip("24", 44100, 1.5, marks=(0.0, 0.6), trim_start=0.6),  # the first mark is cut off
    Clip("25", None, 0.6),  # silent: the flash alone, silence where its beep would be
]


def make(clip: Clip, path: Path) -> Path:
    length = clip.seconds
    lit = "+".join(f"between(t,{m},{m + FLASH_S - 0.001})" for m in clip.marks)
    video = (
        f"color=c=black:s=320x240:r={clip.fps}:d={length},"
        f"drawbox=c=white:t=fill:enable='{lit}',format=yuv420p"
    )
    argv = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video]
    if clip.sample_rate:
        tone = f"if({lit},0.5*sin(2*PI*1000*t),0)"
        argv += ["-f", "lavfi", "-i", f"aevalsrc='{tone}':s={clip.sample_rate}:d={length}"]
        argv += ["-c:a", "aac", "-ar", str(clip.sample_rate)]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", str(path)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return path


def flash_onsets(path: Path, fps: Fraction) -> list[float]:
    """Times (s) of the frames where the picture turns white."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "scale=32:24,format=gray",
         "-f", "rawvideo", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    size = 32 * 24
    lit = [sum(done.stdout[i : i + size]) / size > 128 for i in range(0, len(done.stdout), size)]
    return [n / fps for n, on in enumerate(lit) if on and (n == 0 or not lit[n - 1])]


def beep_onsets(path: Path) -> list[float]:
    """Times (s) where the sound rises out of silence, to the millisecond."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar",
         str(RATE), "-f", "s16le", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    samples = array("h", done.stdout)
    window = RATE // 1000
    loud = [
        max(abs(s) for s in samples[i : i + window]) > 3000
        for i in range(0, len(samples) - window, window)
    ]
    return [n / 1000 for n, on in enumerate(loud) if on and not any(loud[max(0, n - 20) : n])]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[media.Clip]:
    directory = tmp_path_factory.mktemp("seams")
    result = []
    for n, clip in enumerate(CLIPS):
        path = make(clip, directory / f"clip-{n}.mp4")
        result.append(media.Clip(path, clip.trim_start, None, probe(path), f"clip {n + 1}"))
    return result


def test_every_flash_and_its_beep_start_together_at_their_seam(inputs, tmp_path):
    fps = choose_frame_rate([i.info.fps for i in inputs])
    assert fps == 30
    settings = encode_settings("720p", "16:9", "low", fps, preset="ultrafast")
    output = tmp_path / "export.mp4"
    render_video(inputs, settings, tmp_path / "work", output, RenderOptions(parallel=2))

    # Where each clip starts in the export: its frames are counted exactly.
    starts, at = [], Fraction(0)
    for clip in CLIPS:
        starts.append(at)
        at += Fraction(frame_count(clip.seconds - clip.trim_start, fps), 1) / fps
    flashes = flash_onsets(output, fps)
    beeps = beep_onsets(output)
    frame = 1 / float(fps)

    assert [round(t / frame) for t in flashes] == [round(s / frame) for s in starts]
    heard = [s for s, clip in zip(starts, CLIPS, strict=True) if clip.sample_rate]
    assert len(beeps) == len(heard)
    for beep, start in zip(beeps, heard, strict=True):
        # The beep starts with its flash: within one output frame (33 ms), as before.
        assert abs(beep - float(start)) <= frame, (beep, float(start))


def test_flashes_and_beeps_stay_together_across_transitions(tmp_path):
    """Mixed rates with a crossfade and a fade between them, loudness on: each clip's mark
    (a flash and a beep in its middle) lands where the timeline arithmetic says, picture
    and sound within one frame of each other."""

    clips = [Clip("24", 44100, 1.6, marks=(0.8,)), Clip("30", 48000, 1.6, marks=(0.8,)),
             Clip("25", 22050, 1.6, marks=(0.8,))]  # fmt: skip
    into = [None, media.Transition("crossfade", 0.4), media.Transition("fade", 0.4)]
    inputs = []
    for n, (clip, transition) in enumerate(zip(clips, into, strict=True)):
        path = make(clip, tmp_path / f"clip-{n}.mp4")
        inputs.append(media.Clip(path, 0.0, None, probe(path), f"clip {n + 1}", None, transition))
    settings = encode_settings("720p", "16:9", "low", Fraction(30), preset="ultrafast",
                               loudness=-14.0)  # fmt: skip
    output = tmp_path / "export.mp4"
    render_video(inputs, settings, tmp_path / "work", output, RenderOptions(parallel=2))
    frame = 1 / 30
    # Each clip is 48 frames; each transition overlaps 12: clips start at 0, 36 and 72.
    expected = [0.8, 36 * frame + 0.8, 72 * frame + 0.8]
    flashes, beeps = flash_onsets(output, Fraction(30)), beep_onsets(output)
    # Within a frame: the marks fall between the sources' own frames (24, 30, 25 fps).
    assert len(flashes) == 3 and len(beeps) == 3, (flashes, beeps)
    for flash, beep, at in zip(flashes, beeps, expected, strict=True):
        assert abs(float(flash) - at) <= frame + 1e-9, (flashes, expected)
        assert abs(beep - float(flash)) <= frame, (beeps, flashes)
