from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.defs.resources import MediaTools
from export_pipeline.defs.settings import Settings
from export_pipeline.domain.formats import FORMATS
from export_pipeline.media.audio import AUDIO_LIST_FORMATS, audio_track_argv
from export_pipeline.media.encoding import (
    DEFAULT_PRESET,
    EncodeSettings,
    audio_sample_count,
    encode_settings,
    frame_count,
)
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.inputs import CLIP_FORMATS, concat_list
from export_pipeline.media.join import concat_argv
from export_pipeline.media.probe import decode_check_argv, probe_argv
from export_pipeline.media.segment import Segment, segment_argv, segment_audio_argv
from export_pipeline_tests.media.spans import segment

SETTINGS = encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001))


def job(duration: float = 2.0, **info) -> Segment:
    """1.5 s into /clips/a.mp4, a 720x1280 clip, `duration` s long."""
    geometry = {"width": 720, "height": 1280, **info}
    video, audio = Path("/work/seg-0.mp4"), Path("/work/seg-0.wav")
    return segment(Path("/clips/a.mp4"), 1.5, duration, video=video, audio=audio, **geometry)


def value_after(argv: list[str], flag: str, start: int = 0) -> str:
    return argv[argv.index(flag, start) + 1]


def filter_graph(argv: list[str]) -> str:
    return value_after(argv, "-filter_complex")


def input_options(argv: list[str], nth: int = 0) -> list[str]:
    """The options of the nth input: everything between the previous input and its -i."""
    positions = [i for i, arg in enumerate(argv) if arg == "-i"]
    start = positions[nth - 1] + 2 if nth else 0
    return argv[start : positions[nth] + 2]


# --- encode settings ---------------------------------------------------------------------


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


# --- segment -----------------------------------------------------------------------------


def test_segment_argv_opens_only_the_local_clip_with_whitelists():
    argv = FFmpeg(ffmpeg="/usr/bin/ffmpeg").command(segment_argv(job(), SETTINGS))
    assert argv[0] == "/usr/bin/ffmpeg"
    assert argv.count("-i") == 1
    assert input_options(argv) == [
        "/usr/bin/ffmpeg",
        "-y",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-nostats",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        CLIP_FORMATS,
        "-threads",
        "2",
        "-max_pixels",
        str(8192 * 4320),
        "-ss",
        "1.500000",
        "-t",
        "2.000000",
        "-i",
        "file:/clips/a.mp4",
    ]
    formats = set(CLIP_FORMATS.split(","))
    assert formats >= {"mov", "mp4", "matroska", "webm", "mpegts", "mpeg", "avi", "flv", "gif"}
    # Demuxers that open other files or URLs stay out.
    assert not formats & {"hls", "dash", "concat", "image2", "image2pipe", "ffconcat", "tee"}


def test_segment_argv_video_output_has_an_exact_frame_count():
    argv = segment_argv(job(duration=2.0), SETTINGS)
    frames = 60  # 2 s at 29.97 fps = 59.94 -> 60
    assert value_after(argv, "-frames:v") == str(frames)
    graph = filter_graph(argv)
    assert "fps=30000/1001:start_time=0" in graph
    assert f"tpad=stop=-1:stop_mode=clone,trim=end_frame={frames}[v]" in graph
    assert value_after(argv, "-c:v") == "libx264"
    assert value_after(argv, "-pix_fmt") == "yuv420p"
    assert value_after(argv, "-preset") == "veryfast"
    assert value_after(argv, "-crf") == "23"
    assert value_after(argv, "-maxrate") == "5000000"
    assert value_after(argv, "-bufsize") == "5000000"
    assert value_after(argv, "-x264-params") == "vbv-init=0.9"
    assert value_after(argv, "-profile:v") == "high"
    # Pictures only: the sound is segment_audio_argv's, in a run of its own.
    video_options = argv[argv.index("-filter_complex") + 2 :]
    assert video_options[:2] == ["-map", "[v]"]
    assert "-c:a" not in argv and "[a]" not in graph and "aresample" not in graph
    assert argv[-1] == "file:/work/seg-0.mp4"


def test_segment_argv_fits_the_picture_with_black_bars():
    # 720x1280 portrait into 1920x1080: 608x1080 at x=656.
    graph = filter_graph(segment_argv(job(), SETTINGS))
    assert "scale=608:1080,setsar=1,pad=1920:1080:656:0:color=black,format=yuv420p" in graph


def test_segment_argv_squares_non_square_pixels():
    graph = filter_graph(segment_argv(job(width=720, height=576, sar=Fraction(16, 15)), SETTINGS))
    assert "scale=1440:1080,setsar=1,pad=1920:1080:240:0" in graph


def test_segment_argv_without_a_known_size_lets_the_scaler_fit():
    graph = filter_graph(segment_argv(job(width=0, height=0), SETTINGS))
    assert "force_original_aspect_ratio=decrease" in graph
    assert "iw*sar" in graph and "setsar=1" in graph


def test_segment_audio_argv_is_resampled_and_padded_to_the_video_length():
    argv = segment_audio_argv(job(duration=2.0), SETTINGS)
    graph = filter_graph(argv)
    samples = 96_096  # 60 frames at 29.97 fps = 2.002 s at 48 kHz
    assert "[0:a:0]aresample=48000:first_pts=0" in graph
    assert "channel_layouts=stereo" in graph and "sample_fmts=s16" in graph
    assert f"apad=whole_len={samples},atrim=end_sample={samples}[a]" in graph
    assert "anullsrc" not in graph
    assert "[v]" not in graph and "-c:v" not in argv and "scale" not in graph  # sound only
    pictures = segment_argv(job(duration=2.0), SETTINGS)
    assert input_options(argv, 0)[-12:] == input_options(pictures, 0)[-12:]  # the same span
    assert value_after(argv, "-map") == "[a]"
    assert value_after(argv, "-c:a") == "pcm_s16le"
    assert value_after(argv, "-ar") == "48000"
    assert value_after(argv, "-ac") == "2"
    assert value_after(argv, "-f") == "wav"
    assert argv[-1] == "file:/work/seg-0.wav"


def test_segment_audio_argv_silent_clip_gets_generated_silence():
    argv = segment_audio_argv(job(has_audio=False, duration=1.0), SETTINGS)
    graph = filter_graph(argv)
    assert "anullsrc=r=48000:cl=stereo" in graph
    assert "[0:a" not in graph
    assert "atrim=end_sample=48048[a]" in graph  # 30 frames = 1.001 s
    assert argv.count("-i") == 1  # silence comes from the graph, not an extra input


def test_segment_argv_uses_retry_settings():
    safer = encode_settings("1080p", "16:9", "medium", Fraction(30), attempt=2)
    argv = segment_argv(job(), safer)
    assert value_after(argv, "-preset") == "ultrafast"
    assert value_after(argv, "-profile:v") == "main"
    assert value_after(argv, "-maxrate") == "4000000"


# --- concat ------------------------------------------------------------------------------


def test_concat_list_uses_basenames():
    paths = [Path("/work/x/segment-0000.mp4"), Path("/work/x/segment-0001.mp4")]
    assert concat_list(paths) == (
        "ffconcat version 1.0\nfile 'segment-0000.mp4'\nfile 'segment-0001.mp4'\n"
    )


@pytest.mark.parametrize(
    "paths",
    [
        [],
        [Path("/a/one.mp4"), Path("/b/two.mp4")],
        [Path("/a/it's.mp4")],
        [Path("/a/new\nline.mp4")],
        [Path("/a/.hidden.mp4")],
        [Path("/a/with space.mp4")],
    ],
)
def test_concat_list_rejects_what_safe_mode_would(paths):
    with pytest.raises(ValueError):
        concat_list(paths)


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


def test_probe_argv():
    argv = FFmpeg(ffprobe="/usr/bin/ffprobe").command(probe_argv(Path("/clips/a b.mp4")))
    assert argv[0] == "/usr/bin/ffprobe"
    assert value_after(argv, "-protocol_whitelist") == "file"
    assert value_after(argv, "-format_whitelist") == CLIP_FORMATS
    assert value_after(argv, "-of") == "json"
    assert "-show_format" in argv and "-show_streams" in argv
    assert argv[-1] == "file:/clips/a b.mp4"


def test_decode_check_argv():
    argv = decode_check_argv(Path("/clips/a.mp4"))
    assert "-xerror" in argv
    assert value_after(argv, "-format_whitelist") == CLIP_FORMATS
    assert argv.index("-t") < argv.index("-i")
    assert argv[-3:] == ["-f", "null", "-"]


def test_the_default_preset_is_the_documented_one():
    """README's configuration table and Performance section name the default preset."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"| `EXPORT_X264_PRESET` | `{DEFAULT_PRESET}` |" in readme
    assert Settings.from_env({}).x264_preset == MediaTools().x264_preset == DEFAULT_PRESET
    assert encode_settings("1080p", "16:9", "high", Fraction(25)).preset == DEFAULT_PRESET
