"""Encoder settings: per quality, format and retry attempt; their cache keys; the frame grid."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.defs.resources import MediaTools
from export_pipeline.defs.settings import Settings
from export_pipeline.domain.formats import FORMATS
from export_pipeline.media.encoding import (
    DEFAULT_PRESET,
    EncodeSettings,
    audio_sample_count,
    encode_settings,
    frame_count,
)

SETTINGS = encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001))


@pytest.mark.parametrize(("quality", "crf"), [("low", 28), ("medium", 23), ("high", 20)])
def test_encode_settings_quality(quality: str, crf: int):
    settings = encode_settings("1080p", "9:16", quality, Fraction(30))
    assert (settings.width, settings.height) == (1080, 1920)
    assert settings.crf == crf
    assert settings.maxrate == {"low": 2_000_000, "medium": 5_000_000, "high": 8_000_000}[quality]
    assert settings.bufsize == settings.maxrate
    # The documented choice (README, Performance): veryfast, the buffer starting 90 % full.
    assert (settings.preset, settings.profile, settings.vbv_init) == ("veryfast", "high", 0.9)
    assert (settings.audio_bitrate, settings.audio_rate) == (192_000, 48_000)


@pytest.mark.parametrize(
    ("attempt", "preset", "maxrate", "profile"),
    [
        (0, "veryfast", 5_000_000, "high"),
        (1, "superfast", 4_000_000, "high"),
        (2, "ultrafast", 4_000_000, "main"),
        (5, "ultrafast", 4_000_000, "main"),
    ],
)
def test_encode_settings_retry_attempts_are_safer(attempt, preset, maxrate, profile):
    settings = encode_settings("1080p", "16:9", "medium", Fraction(30), attempt=attempt)
    assert (settings.preset, settings.maxrate, settings.profile) == (preset, maxrate, profile)
    assert settings.bufsize == maxrate
    assert settings.crf == 23


@pytest.mark.parametrize(
    ("fps", "preset", "attempt", "expected"),
    [
        (Fraction(30), None, 0, "veryfast"),  # 30 fps is not a high rate
        (Fraction(30000, 1001), None, 0, "veryfast"),
        (Fraction(50), None, 0, "fast"),  # two presets slower above 30 fps
        (Fraction(60), None, 0, "fast"),
        (Fraction(60), "medium", 0, "slower"),  # from the operator's preset
        (Fraction(60), "slower", 0, "veryslow"),  # never past the slowest
        (Fraction(60), None, 1, "faster"),  # a retry is one step faster from there
    ],
)
def test_a_high_frame_rate_is_encoded_slower(fps, preset, attempt, expected):
    """At 60 fps the bitrate cap leaves half the bits per frame: fast pans lost 0.0072 SSIM at
    veryfast, 0.0035 at fast (bench_corpus, `motion`). Only formats that say so slow down."""
    settings = encode_settings("1080p", "16:9", "high", fps, preset=preset, attempt=attempt)
    assert settings.preset == expected
    for name in ("mp4-hevc", "webm"):
        other = encode_settings("1080p", "16:9", "high", fps, format=name, attempt=attempt)
        plain = encode_settings("1080p", "16:9", "high", Fraction(30), format=name, attempt=attempt)
        assert other.preset == plain.preset


def test_encode_settings_retry_from_the_fastest_preset_stays_there():
    settings = encode_settings("720p", "1:1", "low", Fraction(24), preset="ultrafast", attempt=1)
    assert settings.preset == "ultrafast"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("1080p", "16:9", "best", Fraction(30)), "low, medium, high"),
        (("1080p", "16:9", "low", Fraction(0)), "frame rate"),
        (("1080p", "3:2", "low", Fraction(30)), "aspect ratio"),
    ],
)
def test_encode_settings_rejects_bad_values(args, message):
    with pytest.raises(ValueError, match=message):
        encode_settings(*args)
    with pytest.raises(ValueError, match="preset"):
        encode_settings("1080p", "16:9", "low", Fraction(30), preset="warp")


def test_cache_key_is_short_stable_and_covers_every_field():
    key = SETTINGS.cache_key()
    assert len(key) == 16 and key.isalnum()
    assert key == encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001)).cache_key()
    changes = {
        "width": 1280,
        "height": 720,
        "fps": Fraction(30),
        "crf": 20,
        "preset": "fast",
        "maxrate": 1,
        "bufsize": 2,
        "vbv_init": 0.5,
        "profile": "main",
        "format": FORMATS["mp4-hevc"],
        "loudness": -14.0,
        "audio_bitrate": 128_000,
        "audio_rate": 44_100,
    }
    # Encoder threads change how a segment is made, not what it is: shared across workers.
    assert set(changes) | {"threads"} == {f.name for f in dataclasses.fields(EncodeSettings)}
    keys = {
        dataclasses.replace(SETTINGS, **{name: value}).cache_key()
        for name, value in changes.items()
    }
    assert len(keys) == len(changes) and key not in keys
    assert dataclasses.replace(SETTINGS, threads=48).cache_key() == key
    # The format counts by its codecs: each format's segments are its own.
    by_format = {dataclasses.replace(SETTINGS, format=f).cache_key() for f in FORMATS.values()}
    assert len(by_format) == len(FORMATS)


@pytest.mark.parametrize(
    ("duration", "fps", "frames"),
    [
        (1.0, Fraction(30), 30),
        (1.0, Fraction(30000, 1001), 30),
        (2.0, Fraction(24000, 1001), 48),
        (1.5, Fraction(25), 38),  # 37.5 rounds half up
        (0.8, Fraction(30000, 1001), 24),
        (0.01, Fraction(24), 1),
        (0.0, Fraction(30), 1),
    ],
)
def test_frame_count(duration: float, fps: Fraction, frames: int):
    assert frame_count(duration, fps) == frames


@pytest.mark.parametrize("duration", [-0.5, float("nan"), float("inf")])
def test_frame_count_rejects_bad_durations(duration: float):
    with pytest.raises(ValueError):
        frame_count(duration, Fraction(30))


def test_audio_sample_count_matches_the_frames():
    assert audio_sample_count(30, dataclasses.replace(SETTINGS, fps=Fraction(30))) == 48_000
    # 30 NTSC frames last 1.001 s.
    assert audio_sample_count(30, SETTINGS) == 48_048
    assert audio_sample_count(1, SETTINGS) == 1602  # 1601.6


def test_the_default_preset_is_the_documented_one():
    """README's configuration table and Performance section name the default preset."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"| `EXPORT_X264_PRESET` | `{DEFAULT_PRESET}` |" in readme
    assert Settings.from_env({}).media.x264_preset == MediaTools().x264_preset == DEFAULT_PRESET
    assert encode_settings("1080p", "16:9", "high", Fraction(25)).preset == DEFAULT_PRESET
