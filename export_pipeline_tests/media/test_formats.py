"""Every output format through real FFmpeg: the codecs, tags and containers each promises,
the exact frame count, audio as long as the video, and the index where players want it."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.domain.formats import FORMATS, output_format
from export_pipeline.media.audio import audio_track_argv
from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings, frame_count, video_encoder_args
from export_pipeline.media.join import concat_argv
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline.media.samples import make_sample_clip
from export_pipeline.media.segment import Segment, segment_argv

# What each format must produce: (video codec, codec tag, audio codec, container).
EXPECTED = {
    "mp4": ("h264", "avc1", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
    "mp4-hevc": ("hevc", "hvc1", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
    "webm": ("vp9", None, "opus", "matroska,webm"),
}
EBML_CUES, EBML_CLUSTER = bytes.fromhex("1C53BB6B"), bytes.fromhex("1F43B675")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    directory = tmp_path_factory.mktemp("formats")
    made = [
        make_sample_clip(directory / "a.mp4", width=320, height=240, fps=Fraction(25),
                         duration=1.0, tone_hz=440),
        make_sample_clip(directory / "b.mp4", width=426, height=240, fps=Fraction(30),
                         duration=0.8, audio_rate=44100, tone_hz=660),
    ]  # fmt: skip
    return [Clip(p, 0.0, None, probe(p), f"clip {n}") for n, p in enumerate(made, 1)]


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_format", "-show_streams", "-of",
         "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_end_to_end(clips, tmp_path, name):
    target = output_format(name)
    settings = encode_settings("720p", "16:9", "low", Fraction(30), "ultrafast", format=name)
    output = tmp_path / f"export.{target.extension}"
    result = render_video(clips, settings, tmp_path / "work", output)

    info = ffprobe(output)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    codec, tag, audio_codec, container = EXPECTED[name]
    assert info["format"]["format_name"] == container
    assert video["codec_name"] == codec and audio["codec_name"] == audio_codec
    if tag:
        assert video["codec_tag_string"] == tag
    assert (video["width"], video["height"], video["pix_fmt"]) == (1280, 720, "yuv420p")
    frames = frame_count(1.0, Fraction(30)) + frame_count(0.8, Fraction(30))
    assert int(video["nb_read_frames"]) == frames == result.frames
    assert (int(audio["sample_rate"]), audio["channels"]) == (48000, 2)
    video_s = frames / 30
    audio_s = float(audio.get("duration") or info["format"]["duration"])
    assert abs(audio_s - video_s) <= 0.03  # audio as long as the video (Opus/AAC framing)

    data = output.read_bytes()
    if target.extension == "mp4":  # faststart: the index before the media
        assert data.index(b"moov") < data.index(b"mdat")
    else:  # WebM: the cues (its index) before the first cluster
        assert 0 < data.index(EBML_CUES) < data.index(EBML_CLUSTER)


def test_webm_segments_are_webm_and_joined_with_opus(tmp_path, clips):
    settings = encode_settings("720p", "16:9", "medium", Fraction(30), format="webm")
    assert settings.format.segments.muxer == "webm" and settings.audio_codec == "opus"
    segment = Segment(0, 0, clips[0], video=tmp_path / "s.webm", audio=tmp_path / "s.wav")
    argv = segment_argv(segment, settings)
    assert argv[-3:] == ["-f", "webm", "file:" + str(tmp_path / "s.webm")]
    assert argv[argv.index("-c:v") + 1] == "libvpx-vp9"
    assert argv[argv.index("-cpu-used") + 1] == "6"
    assert argv[argv.index("-crf") + 1] == "40"
    assert settings.format.audio.track.extension == "webm"
    track = audio_track_argv(tmp_path / "a.ffconcat", tmp_path / "a.webm", settings)
    assert track[track.index("-c:a") + 1] == "libopus"
    join = concat_argv(tmp_path / "v.ffconcat", tmp_path / "a.webm", tmp_path / "o.webm",
                       settings)  # fmt: skip
    assert join[join.index("-c:a") + 1] == "copy"
    assert "-cues_to_front" in join and "-movflags" not in join


def test_formats_never_share_cached_segments():
    keys = {
        encode_settings("1080p", "16:9", "high", Fraction(30), format=name).cache_key()
        for name in FORMATS
    }
    assert len(keys) == len(FORMATS)


def test_hevc_keeps_the_cap_and_is_tagged_for_apple():
    settings = encode_settings("1080p", "16:9", "high", Fraction(30), format="mp4-hevc")
    args = video_encoder_args(settings)
    params = args[args.index("-x265-params") + 1]
    assert "vbv-maxrate=8000:vbv-bufsize=8000" in params
    assert args[args.index("-tag:v") + 1] == "hvc1"
    retry = encode_settings("1080p", "16:9", "high", Fraction(30), attempt=1, format="mp4-hevc")
    assert retry.preset == "ultrafast" and retry.maxrate == 6_400_000


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format 'mov'; allowed: mp4, mp4-hevc, webm"):
        encode_settings("1080p", "16:9", "high", Fraction(30), format="mov")
