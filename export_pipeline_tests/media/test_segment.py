"""A segment's commands (pictures with an exact frame count, sound of exactly the same length)
and its cache keys (short, and equal for equal spans)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.inputs import CLIP_FORMATS
from export_pipeline.media.segment import Segment, segment_argv, segment_audio_argv, segment_key
from export_pipeline_tests.media.test_clip import SETTINGS as COPY_SETTINGS
from export_pipeline_tests.media.test_clip import clip
from export_pipeline_tests.media.tools import filter_graph, input_options, segment, value_after

SETTINGS = encode_settings("1080p", "16:9", "medium", Fraction(30000, 1001))


def job(duration: float = 2.0, **info) -> Segment:
    """1.5 s into /clips/a.mp4, a 720x1280 clip, `duration` s long."""
    geometry = {"width": 720, "height": 1280, **info}
    video, audio = Path("/work/seg-0.mp4"), Path("/work/seg-0.wav")
    return segment(Path("/clips/a.mp4"), 1.5, duration, video=video, audio=audio, **geometry)


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


# --- cache keys ----------------------------------------------------------------------------


def test_a_duration_past_the_end_is_the_same_segment_as_to_the_end():
    to_end = segment_key(clip(), COPY_SETTINGS, copy=False)
    assert segment_key(clip(duration=1e308), COPY_SETTINGS, copy=False) == to_end
    assert segment_key(clip(trim=1.0, duration=4.0), COPY_SETTINGS, copy=False) == segment_key(
        clip(trim=1.0), COPY_SETTINGS, copy=False
    )


def test_keys_stay_short_whatever_the_request_says():
    # 1e308 once became a 300-digit file name ("File name too long", retried 4 times).
    for trim, duration in [(0.0, 1e308), (4.999, 1e308), (0.0, 4.9999999), (0.0, 1e-9)]:
        key = segment_key(clip(trim=trim, duration=duration), COPY_SETTINGS, copy=False)
        assert len(key) < 64, key
    assert segment_key(clip(duration=2.5), COPY_SETTINGS, copy=False) != segment_key(
        clip(), COPY_SETTINGS, copy=False
    )
