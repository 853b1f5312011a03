"""What an export asks for: a resolution, an aspect ratio and a quality, and the frame size
and bitrate cap they make. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable
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


# Video bitrate cap for a 1920x1080 frame (2,073,600 pixels), in bit/s.
_REFERENCE_PIXELS = 1920 * 1080
_BITRATE_AT_1080P: dict[str, int] = {"low": 2_000_000, "medium": 5_000_000, "high": 8_000_000}


def allowed_error(kind: str, value: str, allowed: Iterable[str]) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def even(value: Fraction | float) -> int:
    """Nearest even integer (at least 2), because yuv420p needs even dimensions."""
    return max(2, 2 * round(Fraction(value) / 2))


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of the output frame: the short side is the resolution's height.

    1080p 16:9 is 1920x1080, 1080p 9:16 is 1080x1920, 1080p 4:5 is 1080x1350.
    """
    if resolution not in RESOLUTIONS:
        raise allowed_error("resolution", resolution, RESOLUTIONS)
    if aspect_ratio not in ASPECT_RATIOS:
        raise allowed_error("aspect ratio", aspect_ratio, ASPECT_RATIOS)
    short = RESOLUTIONS[resolution]
    aw, ah = ASPECT_RATIOS[aspect_ratio]
    if aw >= ah:
        return even(Fraction(short * aw, ah)), short
    return short, even(Fraction(short * ah, aw))


def video_bitrate_cap(quality: str, width: int, height: int) -> int:
    """Maximum video bitrate in bit/s for a quality and frame size.

    The rule: low/medium/high are capped at 2/5/8 Mbit/s for a 1920x1080 frame, and the cap
    scales linearly with the pixel count (width x height) for other frame sizes, rounded to
    whole kbit/s. So 4k 16:9 (4x the pixels) high is 32 Mbit/s, 1080x1350 medium is 3.5 Mbit/s.
    """
    if quality not in _BITRATE_AT_1080P:
        raise allowed_error("quality", quality, QUALITIES)
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    scaled = Fraction(_BITRATE_AT_1080P[quality] * width * height, _REFERENCE_PIXELS)
    return round(scaled / 1000) * 1000
