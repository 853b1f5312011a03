"""The containers and source properties creators actually send, each generated with FFmpeg
and taken through probe, the download-time check and a one-segment render.

Every accepted input must come out as an exact number of yuv420p frames at the target size,
with a WAV of exactly the same length: the seams of an export depend on it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings, frame_count
from export_pipeline.media.probe import InvalidMedia, probe, probe_and_check
from export_pipeline.media.segment import render_segment

SECONDS = 2.0
PATTERN = "testsrc2=size={w}x{h}:rate={fps}:duration={d}"
TONE = "sine=frequency=440:sample_rate=44100:duration={d}"


@dataclass(frozen=True)
class Source:
    """How to make one kind of input: extra FFmpeg output options and the file name."""

    name: str
    options: tuple[str, ...]
    width: int = 640
    height: int = 360
    fps: str = "25"
    audio: bool = True
    video_filter: str = ""
    expect: dict = field(default_factory=dict)  # what probe must report, beyond the basics


SOURCES = [
    Source("mpegts.ts", ("-c:v", "libx264", "-c:a", "aac", "-f", "mpegts")),
    Source("program.mpg", ("-c:v", "mpeg2video", "-q:v", "4", "-c:a", "mp2", "-f", "mpeg")),
    Source("dvd.vob", ("-c:v", "mpeg2video", "-q:v", "4", "-c:a", "ac3", "-f", "vob")),
    # A raw MPEG video elementary stream (what some .mpg files are): no container, no
    # declared duration, no timestamps but decode order.
    Source("elementary.m2v", ("-c:v", "mpeg2video", "-q:v", "4", "-f", "mpeg2video"),
           audio=False),
    Source("legacy.avi", ("-c:v", "mpeg4", "-q:v", "4", "-c:a", "pcm_s16le", "-f", "avi")),
    Source("flash.flv", ("-c:v", "libx264", "-c:a", "aac", "-f", "flv")),
    Source("animated.gif", ("-f", "gif"), width=320, height=180, fps="10", audio=False),
    Source("camera.mov", ("-c:v", "libx264", "-c:a", "aac", "-f", "mov")),
    Source("clip.webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                         "-c:a", "libopus", "-f", "webm"), expect={"video_codec": "vp9"}),
    Source("hevc.mp4", ("-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                        "-x265-params", "log-level=error", "-c:a", "aac", "-f", "mp4"),
           expect={"video_codec": "hevc"}),
    Source("av1.mkv", ("-c:v", "libsvtav1", "-preset", "12", "-c:a", "libopus",
                       "-f", "matroska"), expect={"video_codec": "av1"}),
    Source("ten-bit.mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                           "-c:a", "aac", "-f", "mp4"), expect={"pix_fmt": "yuv420p10le"}),
    Source("four-two-two.mov", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                                "yuv422p", "-c:a", "aac", "-f", "mov"),
           expect={"pix_fmt": "yuv422p"}),
    Source("interlaced.ts", ("-c:v", "mpeg2video", "-q:v", "4", "-flags", "+ilme+ildct",
                             "-top", "1", "-c:a", "mp2", "-f", "mpegts"),
           width=720, height=576, fps="50", video_filter="interlace=scan=tff",
           expect={"interlaced": True}),
    Source("vfr.mkv", ("-c:v", "libx264", "-preset", "ultrafast", "-fps_mode", "vfr",
                       "-c:a", "aac", "-f", "matroska"),
           fps="30", video_filter="select='not(eq(mod(n\\,5)\\,2))'"),
]  # fmt: skip


def make(source: Source, directory: Path) -> Path:
    path = directory / source.name
    if path.exists():
        return path
    video = PATTERN.format(w=source.width, h=source.height, fps=source.fps, d=SECONDS)
    argv = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video]
    if source.audio:
        argv += ["-f", "lavfi", "-i", TONE.format(d=SECONDS)]
    if source.video_filter:
        argv += ["-vf", source.video_filter]
    argv += [*source.options, "-shortest", str(path)]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("containers")


def ffprobe_json(path: Path, *entries: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *entries, str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_accepted_inputs_render_exact_segments(source: Source, sources: Path, tmp_path: Path):
    path = make(source, sources)
    info = probe_and_check(path)
    assert (info.width, info.height) == (source.width, source.height)
    assert abs(info.duration - SECONDS) < 0.25
    assert info.has_audio is source.audio
    for name, value in source.expect.items():
        assert getattr(info, name) == value, (name, getattr(info, name))

    settings = encode_settings("720p", "16:9", "low", Fraction(30), "ultrafast")
    video, audio = tmp_path / "segment.mp4", tmp_path / "segment.wav"
    inp = Clip(path, 0.25, 1.5, info, "clip 1 (scene 1)")
    frames = render_segment(inp, settings, video, audio)

    assert frames == frame_count(1.5, Fraction(30)) == 45
    stream = ffprobe_json(video, "-count_frames", "-show_streams")["streams"][0]
    assert int(stream["nb_read_frames"]) == frames
    assert (stream["width"], stream["height"], stream["pix_fmt"]) == (1280, 720, "yuv420p")
    wav = ffprobe_json(audio, "-show_streams")["streams"][0]
    assert abs(float(wav["duration"]) - frames / 30) < 1 / 48000 * 2


def idet(path: Path) -> dict[str, int]:
    """FFmpeg's interlace detector over the whole file: frames judged TFF, BFF, progressive."""
    log = subprocess.run(
        ["ffmpeg", "-v", "info", "-nostats", "-i", str(path), "-vf", "idet", "-an", "-f", "null",
         "-"], capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    line = next(x for x in log.splitlines() if "Multi frame detection" in x)
    words = line.split("Multi frame detection:")[1].replace(":", "").split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def test_interlaced_sources_are_deinterlaced(sources: Path, tmp_path: Path):
    """Woven fields of a moving picture comb; the detector sees them in the source and must
    see none in the segment."""
    path = make(next(s for s in SOURCES if s.name == "interlaced.ts"), sources)
    info = probe(path)
    assert info.interlaced
    source = idet(path)
    assert source["TFF"] > source["Progressive"], source
    settings = encode_settings("720p", "16:9", "low", Fraction(25), "ultrafast")
    video, audio = tmp_path / "segment.mp4", tmp_path / "segment.wav"
    render_segment(Clip(path, 0, 1.5, info, "clip 1"), settings, video, audio)
    out = idet(video)
    assert out["TFF"] + out["BFF"] <= 2 and out["Progressive"] > 20, out


def test_vfr_sources_keep_sync(sources: Path, tmp_path: Path):
    """A variable-frame-rate clip becomes the constant output rate with its audio aligned:
    frame and sample counts agree exactly over the whole segment."""
    path = make(next(s for s in SOURCES if s.name == "vfr.mkv"), sources)
    info = probe_and_check(path)
    settings = encode_settings("720p", "16:9", "low", Fraction(30), "ultrafast")
    video, audio = tmp_path / "segment.mp4", tmp_path / "segment.wav"
    frames = render_segment(Clip(path, 0, None, info, "clip 1"), settings, video, audio)
    stream = ffprobe_json(video, "-count_frames", "-show_streams")["streams"][0]
    assert int(stream["nb_read_frames"]) == frames
    assert stream["avg_frame_rate"] == "30/1"
    wav = ffprobe_json(audio, "-show_streams")["streams"][0]
    assert abs(float(wav["duration"]) - frames / 30) < 1e-3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("still.jpg", None, "is not a supported video file"),
        ("list.mpd", b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"/>', "XML"),
        ("playlist.m3u8", b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "HLS playlist"),
        ("concat.txt", b"ffconcat version 1.0\nfile /etc/passwd\n", "ffconcat playlist"),
    ],
)
def test_inputs_that_read_other_files_stay_refused(tmp_path: Path, name, content, message):
    path = tmp_path / name
    if content is None:  # a single JPEG: the image2 family reads numbered file sequences
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64",
             "-frames:v", "1", str(path)], check=True,
        )  # fmt: skip
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidMedia) as info:
        probe_and_check(path)
    assert message in str(info.value)


def test_a_rotated_phone_clip_is_rendered_upright(tmp_path: Path):
    """A portrait phone clip stored landscape with a 90 degree display matrix: probe reports
    the displayed (portrait) size, and the export shows it the way players do (FFmpeg's own
    autorotation is the judge), filling a 9:16 frame without bars."""
    stored, path = tmp_path / "stored.mp4", tmp_path / "phone.mp4"
    picture = "color=c=red:s=640x360:r=25:d=1,drawbox=x=320:y=0:w=320:h=360:c=blue:t=fill"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", picture, "-c:v", "libx264",
         "-preset", "ultrafast", str(stored)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # Remuxed with the tag: the MP4 muxer writes it as a display matrix, as phones do.
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(stored), "-c", "copy",
         "-metadata:s:v:0", "rotate=90", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    info = probe_and_check(path)
    assert (info.width, info.height) == (360, 640)
    settings = encode_settings("720p", "9:16", "low", Fraction(25), "ultrafast")
    video, audio = tmp_path / "segment.mp4", tmp_path / "segment.wav"
    render_segment(Clip(path, 0, None, info, "clip 1"), settings, video, audio)

    def halves(file: Path, width: int, height: int) -> list[tuple[int, int, int]]:
        """Mean colour of the top and bottom halves of the first frame, as players show it."""
        rgb = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(file), "-frames:v", "1", "-vf",
             f"scale={width}:{height}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        half = len(rgb) // 2
        return [
            tuple(sum(part[c::3]) // (len(part) // 3) for c in range(3))
            for part in (rgb[:half], rgb[half:])
        ]

    expected = halves(path, 36, 64)
    assert expected[0] != expected[1]  # the picture has a top and a bottom
    for got, want in zip(halves(video, 36, 64), expected, strict=True):
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < 24, (got, want)
