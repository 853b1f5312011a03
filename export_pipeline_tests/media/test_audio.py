"""The audio track's command: the WAV segments joined and encoded once."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.formats import FORMATS
from export_pipeline.media.audio import AUDIO_LIST_FORMATS, audio_track_argv
from export_pipeline.media.encoding import encode_settings
from export_pipeline_tests.media.tools import input_options, value_after

SETTINGS = encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001))


def test_audio_track_argv_encodes_the_wav_segments_once():
    argv = audio_track_argv(Path("/w/audio.ffconcat"), Path("/w/audio.m4a"), SETTINGS)
    assert input_options(argv, 0)[-8:] == [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        AUDIO_LIST_FORMATS,
        "-f",
        "concat",
        "-i",
        "file:/w/audio.ffconcat",
    ]
    assert "-safe" not in argv
    assert value_after(argv, "-map") == "0:a:0"
    assert value_after(argv, "-c:a") == "aac"
    assert value_after(argv, "-b:a") == "192000"
    assert value_after(argv, "-ar") == "48000"
    assert argv[-3:] == ["-f", "mp4", "file:/w/audio.m4a"]
    opus = dataclasses.replace(SETTINGS, format=FORMATS["webm"], audio_bitrate=128000)
    argv = audio_track_argv(Path("/w/audio.ffconcat"), Path("/w/audio.webm"), opus)
    assert value_after(argv, "-c:a") == "libopus"
    assert argv[-3:] == ["-f", "webm", "file:/w/audio.webm"]
