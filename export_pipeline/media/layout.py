"""Frame-size, bitrate and frame-rate maths for an export target. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

# Short side of the output frame, in pixels.
RESOLUTIONS: dict[str, int] = {"720p": 720, "1080p": 1080, "1440p": 1440, "4k": 2160}

# Width:height of the output frame.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:5": (4, 5),
}

QUALITIES: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class OutputFormat:
    """What a request's `format` makes: the codecs, the container, how it is served."""

    name: str
    video_codec: str  # h264, hevc or vp9 (see commands.video_encoder_args)
    audio_codec: str  # aac or opus
    extension: str  # of the published file, and the muxer that writes it
    content_type: str


FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("mp4", "h264", "aac", "mp4", "video/mp4"),
        # H.265 in MP4, tagged hvc1 so that Apple's players open it.
        OutputFormat("mp4-hevc", "hevc", "aac", "mp4", "video/mp4"),
        OutputFormat("webm", "vp9", "opus", "webm", "video/webm"),
    )
}
DEFAULT_FORMAT = "mp4"


def output_format(name: str | None) -> OutputFormat:
    """The format called `name` (None: the default, for rows an older app wrote)."""
    name = name or DEFAULT_FORMAT
    if name not in FORMATS:
        raise _allowed("format", name, FORMATS)
    return FORMATS[name]


# Video bitrate cap for a 1920x1080 frame (2,073,600 pixels), in bit/s.
_REFERENCE_PIXELS = 1920 * 1080
_BITRATE_AT_1080P: dict[str, int] = {"low": 2_000_000, "medium": 5_000_000, "high": 8_000_000}

# Rates that measured averages (e.g. 2997/100) are snapped to when they are this close.
_COMMON_RATES = tuple(
    Fraction(n, d)
    for n, d in [(24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (48, 1)]
    + [(50, 1), (60000, 1001), (60, 1), (120, 1)]
)
_SNAP_TOLERANCE = Fraction(1, 5000)  # 0.02 %, well under the 0.1 % of NTSC's 1000/1001
_DEFAULT_RATE = Fraction(30)


def _allowed(kind: str, value: str, allowed: Iterable[str]) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def _even(value: Fraction | float) -> int:
    """Nearest even integer (at least 2), because yuv420p needs even dimensions."""
    return max(2, 2 * round(Fraction(value) / 2))


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of the output frame: the short side is the resolution's height.

    1080p 16:9 is 1920x1080, 1080p 9:16 is 1080x1920, 1080p 4:5 is 1080x1350.
    """
    if resolution not in RESOLUTIONS:
        raise _allowed("resolution", resolution, RESOLUTIONS)
    if aspect_ratio not in ASPECT_RATIOS:
        raise _allowed("aspect ratio", aspect_ratio, ASPECT_RATIOS)
    short = RESOLUTIONS[resolution]
    aw, ah = ASPECT_RATIOS[aspect_ratio]
    if aw >= ah:
        return _even(Fraction(short * aw, ah)), short
    return short, _even(Fraction(short * ah, aw))


def video_bitrate_cap(quality: str, width: int, height: int) -> int:
    """Maximum video bitrate in bit/s for a quality and frame size.

    The rule: low/medium/high are capped at 2/5/8 Mbit/s for a 1920x1080 frame, and the cap
    scales linearly with the pixel count (width x height) for other frame sizes, rounded to
    whole kbit/s. So 4k 16:9 (4x the pixels) high is 32 Mbit/s, 1080x1350 medium is 3.5 Mbit/s.
    """
    if quality not in _BITRATE_AT_1080P:
        raise _allowed("quality", quality, QUALITIES)
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    scaled = Fraction(_BITRATE_AT_1080P[quality] * width * height, _REFERENCE_PIXELS)
    return round(scaled / 1000) * 1000


def fit_rect(
    src_w: int, src_h: int, dst_w: int, dst_h: int, sar: Fraction = Fraction(1)
) -> tuple[int, int, int, int]:
    """Fit a source frame inside the destination keeping its displayed aspect ratio.

    `sar` is the source's sample (pixel) aspect ratio; the result is in square pixels.
    Returns (w, h, x, y): the scaled size and the top-left offset of the picture inside the
    destination. All four are even (yuv420p chroma is subsampled by two); the picture is
    centered, up to one pixel off because of the even offset. The rest is padding.
    """
    if min(src_w, src_h, dst_w, dst_h) <= 0 or sar <= 0:
        raise ValueError(f"cannot fit {src_w}x{src_h} (SAR {sar}) into {dst_w}x{dst_h}")
    display_w = Fraction(src_w) * sar
    if display_w * dst_h >= Fraction(src_h) * dst_w:
        # Wider than the destination: full width, bars top and bottom.
        w = dst_w
        h = min(dst_h, _even(Fraction(dst_w) * src_h / display_w))
    else:
        # Taller than the destination: full height, bars left and right.
        h = dst_h
        w = min(dst_w, _even(Fraction(dst_h) * display_w / src_h))
    x = (dst_w - w) // 2 // 2 * 2
    y = (dst_h - h) // 2 // 2 * 2
    return w, h, x, y


def _snap(rate: Fraction) -> Fraction:
    nearest = min(_COMMON_RATES, key=lambda common: abs(rate - common))
    return nearest if abs(rate - nearest) <= nearest * _SNAP_TOLERANCE else rate


def choose_frame_rate(rates: list[Fraction], cap: Fraction = Fraction(60)) -> Fraction:
    """The output frame rate: the highest clip rate, at most `cap`.

    Rates that are not positive (unknown) are ignored; with no known rate the result is 30.
    Measured averages within 0.02 % of a common rate snap to it, so NTSC rates stay
    exact rationals such as 30000/1001.
    """
    known = [_snap(Fraction(rate)) for rate in rates if rate > 0]
    if not known:
        return min(_DEFAULT_RATE, cap)
    return min(max(known), Fraction(cap))
