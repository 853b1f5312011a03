"""Loudness: clips from different generations, far apart in level, come out at one target
(EBU R128, measured with FFmpeg's ebur128 on each clip's span of the output), under the
true-peak ceiling, with silent clips left silent and no gain riding inside a clip."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.loudness import (
    TRUE_PEAK_CEILING_DB,
    Loudness,
    loudness_gain,
    parse_loudness,
)
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video

TARGET = -14.0


def make_clip(path: Path, audio: str | None, seconds: float = 3.0) -> Path:
    """A small 30 fps clip whose audio is the lavfi source `audio` (None: no audio track)."""
    video = ["-f", "lavfi", "-i", f"testsrc2=s=320x180:r=30:d={seconds}"]
    sound = ["-f", "lavfi", "-i", f"{audio},atrim=duration={seconds}"] if audio else []
    codecs = ["-c:a", "aac", "-b:a", "192k"] if audio else []
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *video, *sound, "-c:v", "libx264", "-preset",
         "ultrafast", "-pix_fmt", "yuv420p", *codecs, "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def measure(path: Path, start: float, duration: float) -> Loudness:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-ss", str(start), "-t", str(duration),
         "-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true:framelog=verbose",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_loudness(done.stderr)


def short_term_range(path: Path, start: float, duration: float) -> float:
    """Spread (LU) of the momentary loudness inside a span: a gain riding the signal
    (pumping) would widen it for a steady source."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-ss", str(start), "-t", str(duration),
         "-i", str(path), "-map", "0:a:0", "-af", "ebur128=framelog=info", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    values = [float(m) for m in re.findall(r" M:\s*(-?[\d.]+)", done.stderr)]
    steady = values[5:-2]  # after the 400 ms window has filled, before the end
    return max(steady) - min(steady)


# Pink noise at two levels far apart (about -35 and -10 LUFS), bursts like syllables whose
# peaks pass the ceiling once brought up to the target (the limiter's case), and no audio.
QUIET = "anoisesrc=color=pink:amplitude=0.1:seed=1"
LOUD = "anoisesrc=color=pink:amplitude=1:seed=2,volume=5dB"
BURSTS = "anoisesrc=color=pink:amplitude=0.3:seed=3,volume='pow(abs(sin(3*PI*t))\\,6)':eval=frame"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    directory = tmp_path_factory.mktemp("loudness")
    paths = [
        make_clip(directory / "quiet.mp4", QUIET),
        make_clip(directory / "loud.mp4", LOUD),
        make_clip(directory / "silent.mp4", None),
        make_clip(directory / "bursts.mp4", BURSTS),
    ]
    return [Clip(p, 0.0, None, probe(p), f"clip {n}") for n, p in enumerate(paths, 1)]


def test_the_sources_really_are_far_apart(clips):
    quiet, loud, _, bursts = (measure(c.path, 0, 3) if c.info.has_audio else None for c in clips)
    assert quiet.integrated <= -34 and loud.integrated >= -11, (quiet, loud)
    assert bursts.true_peak + (TARGET - bursts.integrated) > TRUE_PEAK_CEILING_DB + 2


def test_every_clip_comes_out_at_the_target_under_the_ceiling(clips, tmp_path):
    settings = encode_settings("720p", "16:9", "low", Fraction(30), threads=2, loudness=TARGET)
    output = tmp_path / "out.mp4"
    render_video(clips, settings, tmp_path / "work", output)
    spans = [(0.0, 3.0), (3.0, 3.0), (6.0, 3.0), (9.0, 3.0)]
    quiet, loud, silent, bursts = (measure(output, start, length) for start, length in spans)
    for clip in (quiet, loud):
        assert abs(clip.integrated - TARGET) <= 1.0, (quiet, loud)
    # Bursts whose peaks stand 17 dB over their loudness reach the target only through the
    # limiter, which gives back less with every dB pushed into it: within 1.5 LU.
    assert TARGET - 1.5 <= bursts.integrated <= TARGET + 1.0, bursts
    for clip in (quiet, loud, bursts):
        assert clip.true_peak <= TRUE_PEAK_CEILING_DB, (quiet, loud, bursts)
    assert silent.integrated <= -60  # still silent, not raised
    # A static gain: the steady noise stays as steady as it was in the source.
    assert short_term_range(output, 0.0, 3.0) <= short_term_range(clips[0].path, 0, 3) + 0.5


def test_without_a_target_clips_keep_their_own_level(clips, tmp_path):
    settings = encode_settings("720p", "16:9", "low", Fraction(30), threads=2)
    output = tmp_path / "out.mp4"
    render_video(clips[:2], settings, tmp_path / "work", output)
    before = [measure(c.path, 0, 3).integrated for c in clips[:2]]
    after = [measure(output, 0, 3).integrated, measure(output, 3, 3).integrated]
    assert after == pytest.approx(before, abs=0.5)


def test_the_target_is_part_of_the_segment_key():
    plain = encode_settings("720p", "16:9", "low", Fraction(30))
    assert encode_settings("720p", "16:9", "low", Fraction(30), loudness=-14).cache_key() != (
        plain.cache_key()
    )
    assert encode_settings("720p", "16:9", "low", Fraction(30), loudness=-16).cache_key() != (
        encode_settings("720p", "16:9", "low", Fraction(30), loudness=-14).cache_key()
    )


@pytest.mark.parametrize(
    ("measured", "gain", "limiter"),
    [
        (Loudness(-35.0, -25.0), 21.0, False),  # brought up, its peaks still under -1
        (Loudness(-35.0, -10.0), 21.0, True),  # brought up past the ceiling: limited
        (Loudness(-10.0, -0.5), -4.0, False),  # brought down
        (Loudness(-70.0, -90.0), 0.0, False),  # silence stays silence
        (Loudness(float("-inf"), float("-inf")), 0.0, False),
    ],
)
def test_gain_and_limiter(measured, gain, limiter):
    assert loudness_gain(measured, TARGET) == (gain, limiter)


def test_parse_loudness_reads_the_summary_and_refuses_anything_else():
    text = (
        "[Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -23.4 LUFS\n"
        "    Threshold: -33.4 LUFS\n\n  Loudness range:\n    LRA:         1.0 LU\n\n"
        "  True peak:\n    Peak:      -3.1 dBFS\n"
    )
    assert parse_loudness(text) == Loudness(-23.4, -3.1)
    with pytest.raises(ValueError, match="no ebur128 summary"):
        parse_loudness("Error opening input")
