"""Fitting clips into the output frame, and the output frame rate. Pure functions."""

from __future__ import annotations

from fractions import Fraction

from export_pipeline.domain.target import even

# Rates that measured averages (e.g. 2997/100) are snapped to when they are this close.
_COMMON_RATES = tuple(
    Fraction(n, d)
    for n, d in [(24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (48, 1)]
    + [(50, 1), (60000, 1001), (60, 1), (120, 1)]
)
_SNAP_TOLERANCE = Fraction(1, 5000)  # 0.02 %, well under the 0.1 % of NTSC's 1000/1001
_DEFAULT_RATE = Fraction(30)


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
        h = min(dst_h, even(Fraction(dst_w) * src_h / display_w))
    else:
        # Taller than the destination: full height, bars left and right.
        h = dst_h
        w = min(dst_w, even(Fraction(dst_h) * display_w / src_h))
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
