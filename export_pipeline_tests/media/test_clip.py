"""A clip whose video already is what the export needs goes in untouched (the copy path)."""

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media.clip import Clip, can_copy, copy_path
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.probe import MediaInfo
from export_pipeline.media.segment import COPY_KEY, Segment, copy_segment_argv, segment_key

SETTINGS = encode_settings("1080p", "16:9", "high", Fraction(24))
READY = MediaInfo(
    format_name="mov,mp4", duration=5.0, size_bytes=1, video_codec="h264", width=1920,
    height=1080, fps=Fraction(24), sar=Fraction(1), has_audio=True, audio_codec="aac",
    audio_channels=2, audio_rate=48000, pix_fmt="yuv420p", video_bitrate=6_000_000,
    extradata_hash="CRC32:aaaa",
)  # fmt: skip


def clip(info=READY, trim=0.0, duration=None, content="abc"):
    return Clip(Path("/x/c.mp4"), trim, duration, info, "clip 1 (scene 1)", content)


@pytest.mark.parametrize(
    ("inp", "ok"),
    [
        (clip(), True),
        (clip(duration=5.0), True),
        (clip(trim=0.5), False),
        (clip(duration=3.0), False),
        (clip(replace(READY, video_codec="hevc")), False),
        (clip(replace(READY, width=1280, height=720)), False),
        (clip(replace(READY, fps=Fraction(30))), False),
        (clip(replace(READY, pix_fmt="yuv444p")), False),
        (clip(replace(READY, sar=Fraction(4, 3))), False),
        (clip(replace(READY, video_bitrate=20_000_000)), False),  # over the quality's cap
        (clip(replace(READY, extradata_hash=None)), False),
    ],
)
def test_can_copy(inp, ok):
    assert can_copy(inp, SETTINGS) is ok


def test_clip_needs_one_set_of_headers():
    other = clip(replace(READY, extradata_hash="CRC32:bbbb"))
    assert copy_path([clip(), clip()], SETTINGS)
    assert not copy_path([clip(), other], SETTINGS)
    assert not copy_path([clip(), clip(trim=1.0)], SETTINGS)


def test_segment_keys_follow_content_trim_and_settings():
    base = segment_key(clip(), SETTINGS, copy=False)
    assert base.startswith("abc/0.000-end-")
    assert segment_key(clip(trim=1.0), SETTINGS, copy=False) != base
    assert segment_key(clip(content="def"), SETTINGS, copy=False) != base
    assert segment_key(clip(), replace(SETTINGS, crf=28), copy=False) != base
    assert segment_key(clip(), SETTINGS, copy=True).endswith(f"-{COPY_KEY}")
    assert segment_key(clip(content=None), SETTINGS, copy=False) is None


def test_copy_argv_copies_the_video_only():
    segment = Segment(0, 0, clip(), video=Path("/w/v.mp4"), audio=Path("/w/a.wav"))
    argv = copy_segment_argv(segment, SETTINGS)
    assert argv[argv.index("-c:v") + 1] == "copy"
    assert "libx264" not in argv and "-filter_complex" not in argv
    assert "-an" in argv and argv[-1] == "file:/w/v.mp4"  # the sound: segment_audio_argv
    assert argv[argv.index("-protocol_whitelist") + 1] == "file"
