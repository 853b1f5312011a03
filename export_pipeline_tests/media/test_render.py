"""End to end: real clips of mixed sizes, rates and audio layouts through real FFmpeg."""

from __future__ import annotations

import json
import math
import struct
import subprocess
from array import array
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.domain.failures import FailureCause
from export_pipeline.media.clip import Clip, ClipError, effective_duration
from export_pipeline.media.encoding import audio_sample_count, encode_settings, frame_count
from export_pipeline.media.frame import choose_frame_rate, fit_rect
from export_pipeline.media.probe import MediaInfo, probe
from export_pipeline.media.render import render_video
from export_pipeline.media.runner import FFmpegError, run_ffmpeg
from export_pipeline.media.samples import make_sample_clip
from export_pipeline.media.segment import Segment, render_segment, segment_argv, segment_audio_argv


@dataclass(frozen=True)
class Sample:
    name: str
    width: int
    height: int
    fps: Fraction
    seconds: float
    channels: int  # 0 = no audio
    rate: int = 48000
    tone: int = 440
    sar: Fraction = Fraction(1)


SAMPLES = [
    Sample("landscape.mp4", 1280, 720, Fraction(24), 1.5, 2, tone=440),
    Sample("portrait.mp4", 720, 1280, Fraction(30), 1.0, 0),
    Sample("classic.mp4", 640, 480, Fraction(25), 1.6, 1, rate=44100, tone=880),
    # Square storage, 16:9 pixels: displays as 640x360; 5.1 audio to downmix.
    Sample(
        "anamorphic.mp4", 360, 360, Fraction(30000, 1001), 1.0, 6, tone=660, sar=Fraction(16, 9)
    ),
]
# (trim_start, duration) per sample: a trim, a whole clip, a duration past the end, a cut.
SPECS = [(0.5, None), (0.0, None), (0.7, 5.0), (0.25, 0.5)]
EFFECTIVE = [1.0, 1.0, 0.9, 0.5]


def info_for(duration: float, *, audio: bool = True) -> MediaInfo:
    return MediaInfo(
        "mov,mp4", duration, 1000, "h264", 640, 360, Fraction(25), Fraction(1), audio,
        "aac" if audio else None, 2 if audio else None, 48000 if audio else None,
    )  # fmt: skip


def ffprobe_json(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    )
    return json.loads(result.stdout)


def top_level_boxes(data: bytes) -> list[bytes]:
    kinds, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        kinds.append(kind)
        offset += size
    return kinds


def decode_frames(path: Path, indexes: list[int], width: int, height: int) -> list[bytes]:
    """The frames with these indexes as packed RGB."""
    select = "+".join(f"eq(n,{index})" for index in indexes)
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"select='{select}'"]
        + ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    )
    size = width * height * 3
    assert len(result.stdout) == size * len(indexes)
    return [result.stdout[i * size : (i + 1) * size] for i in range(len(indexes))]


def decode_audio(path: Path) -> tuple[array, array]:
    """Left and right channels as 16-bit samples at 48 kHz."""
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le"]
        + ["-ac", "2", "-ar", "48000", "-"],
        capture_output=True,
        check=True,
    )
    samples = array("h", result.stdout)
    return samples[0::2], samples[1::2]


def rms(samples: array) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def tone_hz(samples: array, rate: int = 48000) -> float:
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


def assert_letterboxed(
    frame: bytes, width: int, height: int, rect: tuple[int, int, int, int]
) -> None:
    """Inside `rect` the picture is bright (the samples have no black), outside it is black."""
    w, h, x, y = rect
    margin = 4  # chroma subsampling and compression blur the edge
    bars = content = 0
    for py in range(1, height, 7):
        for px in range(1, width, 7):
            offset = (py * width + px) * 3
            brightest = max(frame[offset : offset + 3])
            if x + margin <= px < x + w - margin and y + margin <= py < y + h - margin:
                content += 1
                assert brightest > 40, f"black pixel inside the picture at {px},{py}"
            elif not (x - margin <= px < x + w + margin and y - margin <= py < y + h + margin):
                bars += 1
                assert brightest < 24, f"non-black pixel in the bars at {px},{py}: {brightest}"
    assert content > 0
    if (w, h) != (width, height):
        assert bars > 0


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    directory = tmp_path_factory.mktemp("clips")
    inputs = []
    for number, (sample, (trim, duration)) in enumerate(zip(SAMPLES, SPECS, strict=True), 1):
        path = make_sample_clip(
            directory / sample.name,
            width=sample.width,
            height=sample.height,
            fps=sample.fps,
            duration=sample.seconds,
            audio=sample.channels > 0,
            audio_channels=max(1, sample.channels),
            audio_rate=sample.rate,
            tone_hz=sample.tone,
            sar=sample.sar,
        )
        label = f"clip {number} (scene {number * 10})"
        inputs.append(Clip(path, trim, duration, probe(path), label))
    return inputs


@pytest.mark.parametrize(("aspect_ratio", "size"), [("16:9", (1920, 1080)), ("9:16", (1080, 1920))])
def test_render_mixed_clips(clips, tmp_path: Path, aspect_ratio: str, size: tuple[int, int]):
    fps = choose_frame_rate([clip.info.fps for clip in clips])
    assert fps == Fraction(30)
    settings = encode_settings("1080p", aspect_ratio, "medium", fps)
    work_dir, output = tmp_path / "work", tmp_path / "out" / "export.mp4"
    progress: list[float] = []

    result = render_video(clips, settings, work_dir, output, on_progress=progress.append)

    frames = [frame_count(d, fps) for d in EFFECTIVE]
    assert [effective_duration(clip) for clip in clips] == pytest.approx(EFFECTIVE)
    assert (result.output, result.segments, result.frames) == (output, 4, sum(frames))
    assert result.size_bytes == output.stat().st_size > 0
    assert result.settings == settings
    assert list(work_dir.iterdir()) == []  # intermediates cleaned
    assert sorted(path.name for path in output.parent.iterdir()) == ["export.mp4"]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 5

    # Streams: H.264 yuv420p square pixels at the exact size, AAC 48 kHz stereo.
    data = ffprobe_json(output)
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    audio = next(s for s in data["streams"] if s["codec_type"] == "audio")
    assert len(data["streams"]) == 2
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (video["width"], video["height"]) == size
    assert video["sample_aspect_ratio"] == "1:1"
    assert video["r_frame_rate"] == "30/1"
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", "48000", 2)

    # Durations: exact frame count, within one frame per clip of the requested total, and
    # audio as long as video.
    assert int(video["nb_frames"]) == sum(frames)
    video_s, audio_s = float(video["duration"]), float(audio["duration"])
    assert video_s == pytest.approx(sum(frames) / 30, abs=0.002)
    assert abs(video_s - sum(EFFECTIVE)) <= len(clips) / 30
    assert abs(audio_s - video_s) <= 0.05
    assert result.duration_s == pytest.approx(video_s, abs=0.05)

    # Fast start: the index comes before the media data.
    boxes = top_level_boxes(output.read_bytes())
    assert boxes.index(b"moov") < boxes.index(b"mdat")

    # Letterbox, never stretch: bars exactly where fit_rect says, in the middle of each clip.
    starts = [sum(frames[:i]) for i in range(len(frames))]
    middles = [start + n // 2 for start, n in zip(starts, frames, strict=True)]
    for clip, frame in zip(clips, decode_frames(output, middles, *size), strict=True):
        rect = fit_rect(clip.info.width, clip.info.height, *size, clip.info.sar)
        assert_letterboxed(frame, *size, rect)

    # Audio: each clip's sound at its place (tone, silence, upmixed mono, downmixed 5.1).
    left, right = decode_audio(output)
    for sample, start, n in zip(SAMPLES, starts, frames, strict=True):
        first = round((start / 30 + 0.05) * 48000)
        last = round(((start + n) / 30 - 0.05) * 48000)
        for channel in (left[first:last], right[first:last]):
            if sample.channels == 0:
                assert rms(channel) < 50
            else:
                # The quietest is 5.1 with the tone in the centre: FFmpeg's downmix scales it
                # by 0.29 (-10.7 dB) so that a full-scale 5.1 mix cannot clip.
                assert rms(channel) > 500
                assert tone_hz(channel) == pytest.approx(sample.tone, rel=0.05)


def test_segment_is_padded_to_the_exact_length(clips, tmp_path: Path):
    """A source shorter than its segment (here 0.6 s left for 1 s: it claimed to be longer)
    still gives N frames and N/fps seconds of audio: the last frame is cloned and the audio
    padded with silence."""
    classic = clips[2]
    settings = encode_settings("720p", "1:1", "low", Fraction(24000, 1001), preset="ultrafast")
    claims = replace(classic.info, duration=2.0)
    clip = Clip(classic.path, 1.0, 1.0, claims, classic.label)
    job = Segment(0, 0, clip, video=tmp_path / "v.mp4", audio=tmp_path / "a.wav")
    run_ffmpeg(segment_argv(job, settings), duration_s=1.0)
    run_ffmpeg(segment_audio_argv(job, settings), duration_s=1.0)
    frames = frame_count(1.0, settings.fps)
    video = ffprobe_json(job.video)["streams"]
    wav = ffprobe_json(job.audio)["streams"]
    assert [s["codec_type"] for s in video] == ["video"]
    assert int(video[0]["nb_frames"]) == frames == 24
    assert (video[0]["width"], video[0]["height"]) == (720, 720)
    assert [s["codec_type"] for s in wav] == ["audio"]
    assert (wav[0]["codec_name"], wav[0]["sample_rate"], wav[0]["channels"]) == (
        "pcm_s16le",
        "48000",
        2,
    )
    assert int(wav[0]["duration_ts"]) == audio_sample_count(frames, settings) == 48048


def test_segment_without_known_geometry_still_letterboxes(clips, tmp_path: Path):
    """A clip without a known frame size falls back to FFmpeg's own fit (same result)."""
    anamorphic = clips[3]
    settings = encode_settings("720p", "9:16", "low", Fraction(24), preset="ultrafast")
    unknown = replace(anamorphic.info, width=0, height=0)
    clip = Clip(anamorphic.path, 0.0, 0.5, unknown, anamorphic.label)
    job = Segment(0, 0, clip, video=tmp_path / "v.mp4", audio=tmp_path / "a.wav")
    run_ffmpeg(segment_argv(job, settings))
    stream = ffprobe_json(job.video)["streams"][0]
    assert (stream["width"], stream["height"], stream["nb_frames"]) == (720, 1280, "12")
    assert stream["sample_aspect_ratio"] == "1:1"
    [frame] = decode_frames(job.video, [6], 720, 1280)
    assert_letterboxed(frame, 720, 1280, fit_rect(360, 360, 720, 1280, Fraction(16, 9)))


def test_render_segment_returns_the_frame_count(clips, tmp_path: Path):
    settings = encode_settings("720p", "9:16", "low", Fraction(25), preset="ultrafast")
    frames = render_segment(clips[1], settings, tmp_path / "s.mp4", tmp_path / "s.wav")
    assert frames == 25
    assert int(ffprobe_json(tmp_path / "s.mp4")["streams"][0]["nb_frames"]) == 25


@pytest.mark.parametrize(
    ("trim", "duration", "expected"),
    [(0.0, None, 5.0), (1.5, None, 3.5), (1.0, 2.0, 2.0), (4.0, 3.0, 1.0), (0.0, 9.0, 5.0)],
)
def test_effective_duration(trim: float, duration: float | None, expected: float):
    inp = Clip(Path("a.mp4"), trim, duration, info_for(5.0), "clip 1")
    assert effective_duration(inp) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("trim", "duration", "message"),
    [
        (9.0, None, r"^clip 2 \(scene 5\): trim_start 9.0 s is beyond the clip's length 5.0 s$"),
        (5.0, 1.0, "trim_start 5.0 s is beyond the clip's length 5.0 s"),
        (-1.0, None, "trim_start -1.0 s must be a number >= 0"),
        (0.0, 0.0, "duration 0.0 s must be a number > 0"),
        (0.0, float("nan"), "duration nan s"),
    ],
)
def test_effective_duration_errors_name_the_clip(trim, duration, message):
    inp = Clip(Path("a.mp4"), trim, duration, info_for(5.0), "clip 2 (scene 5)")
    with pytest.raises(ClipError, match=message) as caught:
        effective_duration(inp)
    assert caught.value.label == "clip 2 (scene 5)"
    assert caught.value.cause == FailureCause.INVALID_REQUEST and caught.value.permanent


def test_render_rejects_a_bad_trim_before_any_work(clips, tmp_path: Path):
    bad = Clip(clips[1].path, 9.0, None, clips[1].info, "clip 2 (scene 5)")
    settings = encode_settings("720p", "16:9", "low", Fraction(30))
    with pytest.raises(ClipError, match="clip 2 \\(scene 5\\): trim_start 9.0 s is beyond"):
        render_video([clips[0], bad], settings, tmp_path / "work", tmp_path / "out.mp4")
    assert not (tmp_path / "work").exists() and not (tmp_path / "out.mp4").exists()


def test_ffmpeg_failure_names_the_clip_and_leaves_nothing_behind(clips, tmp_path: Path):
    gone = Clip(tmp_path / "deleted.mp4", 0.0, None, clips[1].info, "clip 7 (scene 9)")
    settings = encode_settings("720p", "16:9", "low", Fraction(30), preset="ultrafast")
    output = tmp_path / "out.mp4"
    with pytest.raises(FFmpegError) as caught:
        render_video([clips[1], gone], settings, tmp_path / "work", output)
    assert "No such file or directory" in caught.value.stderr
    assert "while encoding clip 7 (scene 9)" in caught.value.__notes__
    assert list((tmp_path / "work").iterdir()) == []
    assert list(tmp_path.glob("*out*")) == []
