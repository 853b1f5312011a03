"""The join's command: segments and audio track copied, each input with its own demuxers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.join import concat_argv
from export_pipeline_tests.media.tools import input_options, value_after

SETTINGS = encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001))


def test_concat_argv_copies_video_and_audio():
    argv = concat_argv(
        Path("/w/video.ffconcat"), Path("/w/audio.m4a"), Path("/out/export.mp4"), SETTINGS
    )
    assert input_options(argv, 0)[-8:] == [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        "concat,mov,mp4",  # the concat demuxer, and the format's segments
        "-f",
        "concat",
        "-i",
        "file:/w/video.ffconcat",
    ]
    assert input_options(argv, 1) == [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        "mov,mp4,m4a",  # the format's audio track
        "-i",
        "file:/w/audio.m4a",
    ]
    assert "-safe" not in argv
    assert value_after(argv, "-c:v") == "copy"
    assert value_after(argv, "-c:a") == "copy"  # encoded once, by audio_track_argv
    assert "-b:a" not in argv
    assert value_after(argv, "-movflags") == "+faststart"
    assert argv[-3:] == ["-f", "mp4", "file:/out/export.mp4"]
    assert "-progress" in argv and "-nostdin" in argv
