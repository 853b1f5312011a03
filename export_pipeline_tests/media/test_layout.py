from __future__ import annotations

from fractions import Fraction

import pytest

from export_pipeline.domain.target import (
    ASPECT_RATIOS,
    QUALITIES,
    RESOLUTIONS,
    frame_size,
    video_bitrate_cap,
)
from export_pipeline.media.frame import choose_frame_rate, fit_rect

EXPECTED_SIZES = {
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("720p", "1:1"): (720, 720),
    ("720p", "4:5"): (720, 900),
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
    ("1080p", "4:5"): (1080, 1350),
    ("1440p", "16:9"): (2560, 1440),
    ("1440p", "9:16"): (1440, 2560),
    ("1440p", "1:1"): (1440, 1440),
    ("1440p", "4:5"): (1440, 1800),
    ("4k", "16:9"): (3840, 2160),
    ("4k", "9:16"): (2160, 3840),
    ("4k", "1:1"): (2160, 2160),
    ("4k", "4:5"): (2160, 2700),
}


def test_every_combination_has_an_expected_size():
    assert set(EXPECTED_SIZES) == {(r, a) for r in RESOLUTIONS for a in ASPECT_RATIOS}
    assert QUALITIES == ("low", "medium", "high")


@pytest.mark.parametrize(("resolution", "aspect_ratio"), sorted(EXPECTED_SIZES))
def test_frame_size(resolution: str, aspect_ratio: str):
    width, height = frame_size(resolution, aspect_ratio)
    assert (width, height) == EXPECTED_SIZES[resolution, aspect_ratio]
    assert width % 2 == 0 and height % 2 == 0
    assert min(width, height) == RESOLUTIONS[resolution]


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "message"),
    [("8k", "16:9", "720p, 1080p, 1440p, 4k"), ("1080p", "21:9", "16:9, 9:16, 1:1, 4:5")],
)
def test_frame_size_rejects_unknown_values(resolution: str, aspect_ratio: str, message: str):
    with pytest.raises(ValueError, match=message):
        frame_size(resolution, aspect_ratio)


@pytest.mark.parametrize(
    ("quality", "width", "height", "expected"),
    [
        ("low", 1920, 1080, 2_000_000),
        ("medium", 1920, 1080, 5_000_000),
        ("high", 1920, 1080, 8_000_000),
        ("medium", 1080, 1920, 5_000_000),  # same pixel count, either orientation
        ("high", 3840, 2160, 32_000_000),  # 4x the pixels
        ("medium", 1080, 1350, 3_516_000),  # 1,458,000 / 2,073,600 of 5 Mbit/s
        ("low", 1280, 720, 889_000),  # 4/9 of 2 Mbit/s
        ("high", 1080, 1080, 4_500_000),
    ],
)
def test_video_bitrate_cap_scales_with_pixel_count(
    quality: str, width: int, height: int, expected: int
):
    assert video_bitrate_cap(quality, width, height) == expected


def test_video_bitrate_cap_rejects_unknown_quality():
    with pytest.raises(ValueError, match="low, medium, high"):
        video_bitrate_cap("ultra", 1920, 1080)


@pytest.mark.parametrize(
    ("src", "dst", "sar", "expected"),
    [
        # Same aspect: fills the frame.
        ((1280, 720), (1920, 1080), Fraction(1), (1920, 1080, 0, 0)),
        # Landscape into portrait: full width, bars top and bottom (607.5 rounds to 608).
        ((1280, 720), (1080, 1920), Fraction(1), (1080, 608, 0, 656)),
        # Portrait into landscape: full height, bars left and right.
        ((720, 1280), (1920, 1080), Fraction(1), (608, 1080, 656, 0)),
        # 4:3 into 16:9 and into 9:16 (555 px margin: offset rounded down to even).
        ((640, 480), (1920, 1080), Fraction(1), (1440, 1080, 240, 0)),
        ((640, 480), (1080, 1920), Fraction(1), (1080, 810, 0, 554)),
        # Odd source sizes.
        ((853, 481), (1920, 1080), Fraction(1), (1916, 1080, 2, 0)),
        ((301, 201), (1080, 1080), Fraction(1), (1080, 722, 0, 178)),
        # Non-square pixels: 720x576 with SAR 16:15 displays as 768x576 (4:3).
        ((720, 576), (1920, 1080), Fraction(16, 15), (1440, 1080, 240, 0)),
        # Anamorphic 16:9 PAL: SAR 64:45 displays as 1024x576 (16:9).
        ((720, 576), (1920, 1080), Fraction(64, 45), (1920, 1080, 0, 0)),
        # A square source stored with 16:9 pixels is landscape, not square.
        ((360, 360), (1080, 1920), Fraction(16, 9), (1080, 608, 0, 656)),
    ],
)
def test_fit_rect(src, dst, sar, expected):
    w, h, x, y = fit_rect(*src, *dst, sar)
    assert (w, h, x, y) == expected
    assert all(value % 2 == 0 for value in (w, h, x, y))
    assert x + w <= dst[0] and y + h <= dst[1]
    # Centered to within the one pixel lost to the even offset.
    assert abs((dst[0] - w) - 2 * x) <= 2 and abs((dst[1] - h) - 2 * y) <= 2
    # Aspect kept to within the even rounding of the short side.
    display = Fraction(src[0]) * sar / src[1]
    assert abs(Fraction(w, h) - display) / display < Fraction(2, min(w, h))


def test_fit_rect_rejects_empty_sizes():
    with pytest.raises(ValueError):
        fit_rect(0, 720, 1920, 1080)


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ([Fraction(24), Fraction(30), Fraction(25)], Fraction(30)),
        ([Fraction(24000, 1001), Fraction(30000, 1001)], Fraction(30000, 1001)),
        ([Fraction(120), Fraction(24)], Fraction(60)),  # capped
        ([Fraction(60000, 1001)], Fraction(60000, 1001)),  # below the cap, kept exact
        ([], Fraction(30)),  # nothing known
        ([Fraction(0), Fraction(0)], Fraction(30)),  # unknown rates are ignored
        ([Fraction(2997, 100)], Fraction(30000, 1001)),  # measured average snaps
        ([Fraction(15), Fraction(0)], Fraction(15)),
        ([Fraction(243, 10)], Fraction(243, 10)),  # unusual rates are kept
    ],
)
def test_choose_frame_rate(rates, expected):
    assert choose_frame_rate(rates) == expected


def test_choose_frame_rate_custom_cap():
    assert choose_frame_rate([Fraction(60)], cap=Fraction(30)) == Fraction(30)
    assert choose_frame_rate([], cap=Fraction(24)) == Fraction(24)
