"""For tests of FFmpeg commands: segments of one clip (without planning a render), and
reading an argv."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from export_pipeline.media.clip import Clip
from export_pipeline.media.inputs import Source
from export_pipeline.media.probe import MediaInfo
from export_pipeline.media.segment import Segment

MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"


def media_info(
    duration: float,
    *,
    width: int = 0,
    height: int = 0,
    sar: Fraction = Fraction(1),
    has_audio: bool = True,
    format_name: str = MP4_DEMUXER,
    interlaced: bool = False,
) -> MediaInfo:
    """A probed clip as the tests need it (0 x 0: a frame size nobody told us)."""
    return MediaInfo(
        format_name, duration, 1000, "h264", width, height, Fraction(25), Fraction(sar),
        has_audio, "aac" if has_audio else None, 2 if has_audio else None,
        48000 if has_audio else None, interlaced=interlaced,
    )  # fmt: skip


def segment(
    source: Source,
    trim_start: float,
    duration: float,
    *,
    video: Path = Path("/work/v.mp4"),
    audio: Path = Path("/work/a.wav"),
    length: float | None = None,
    **info,
) -> Segment:
    """A segment playing `duration` s of `source` from `trim_start`; the clip is probed as
    `length` s long (by default just long enough), with `info` (`media_info`'s options)."""
    probed = media_info(trim_start + duration if length is None else length, **info)
    clip = Clip(source, trim_start, duration, probed, "clip 1")
    return Segment(0, 0, clip, video=video, audio=audio)


def value_after(argv: list[str], flag: str, start: int = 0) -> str:
    return argv[argv.index(flag, start) + 1]


def filter_graph(argv: list[str]) -> str:
    return value_after(argv, "-filter_complex")


def input_options(argv: list[str], nth: int = 0) -> list[str]:
    """The options of the nth input: everything between the previous input and its -i."""
    positions = [i for i, arg in enumerate(argv) if arg == "-i"]
    start = positions[nth - 1] + 2 if nth else 0
    return argv[start : positions[nth] + 2]
