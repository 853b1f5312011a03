"""Generated sample clips for the demo command and tests (no downloads, no fixtures on disk).

The picture is FFmpeg's `testsrc2` pattern with every RGB channel lifted to at least 64, so it
is colourful and moving from edge to edge and has no black pixel anywhere: black bars in an
export can only come from padding.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from export_pipeline.media.encoding import frame_count
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg

# Default channel layout names for 1..8 channels.
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# 0..255 -> 64..255: keeps the pattern's colours, removes its blacks.
_LIFT = "val*3/4+64"


def sample_clip_argv(
    path: Path,
    *,
    width: int,
    height: int,
    fps: int | Fraction = 24,
    duration: float = 2.0,
    audio: bool = True,
    audio_channels: int = 2,
    audio_rate: int = 48000,
    tone_hz: int = 440,
    sar: Fraction = Fraction(1),
) -> list[str]:
    """The command `make_sample_clip` runs."""
    if audio and audio_channels not in _LAYOUTS:
        raise ValueError(f"audio_channels must be 1..8, got {audio_channels}")
    rate = Fraction(fps)
    sar = Fraction(sar)
    # testsrc2's own duration rounds up to whole frames; trim to the nearest frame instead.
    frames = frame_count(duration, rate)
    graph = [
        f"testsrc2=size={width}x{height}:rate={rate.numerator}/{rate.denominator}",
        f"trim=end_frame={frames}",
        f"lutrgb=r={_LIFT}:g={_LIFT}:b={_LIFT}",
        f"setsar={sar.numerator}/{sar.denominator}",
        "format=yuv420p[v]",
    ]
    argv = ["ffmpeg", "-y", "-nostdin", "-hide_banner", "-loglevel", "error"]
    maps = ["-map", "[v]"]
    filter_complex = ",".join(graph)
    if audio:
        filter_complex += (
            f";sine=frequency={tone_hz}:sample_rate={audio_rate}:duration={duration},"
            f"aformat=channel_layouts={_LAYOUTS[audio_channels]}[a]"
        )
        maps += ["-map", "[a]", "-c:a", "aac", "-b:a", "128k"]
    return [
        *argv,
        "-filter_complex",
        filter_complex,
        *maps,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-f",
        "mp4",
        f"file:{path}",
    ]


def make_sample_clip(path: Path, ffmpeg: FFmpeg = DEFAULT_FFMPEG, **options) -> Path:
    """Write a deterministic H.264/AAC MP4 test clip (ultrafast) and return its path;
    `options` are `sample_clip_argv`'s (size, rate, duration, audio, `sar`).

    The MP4 keeps FFmpeg's default layout (index at the end), like most camera and generator
    output. `audio_rate` and `sar` (sample aspect ratio) make unusual clips for tests.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg.run(sample_clip_argv(path, **options), timeout_s=120)
    return path
