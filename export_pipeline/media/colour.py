"""The colour of an export: every output is SDR BT.709 (primaries, transfer and matrix BT.709,
limited range) and says so in its tags, whatever its clips are. Each clip gets one decision,
made from its probe (`colour_decision`), which picks the filters that bring its pictures
there (`colour_filters`) and is part of its segment's cache key.

- `sdr-bt709`: already BT.709, or untagged and HD: nothing to do.
- `bt601-to-bt709`: tagged BT.601 (matrix smpte170m or bt470bg), or untagged and SD (at
  most 1024x576 either way round, the largest SD frame): the matrix is converted. The
  primaries are left alone: SMPTE C and EBU are within a few code values of BT.709.
- `pq-to-sdr`, `hlg-to-sdr`: HDR (transfer smpte2084 or arib-std-b67, BT.2020 as phones
  record it): tone-mapped. Light is made linear with HDR reference white (BT.2408: 203
  cd/m², 75 % HLG signal) at 1.0, so content up to reference white keeps its SDR values;
  the primaries become BT.709; `tonemap=mobius` leaves everything below 0.8 of reference
  white as it is and rolls off above, a 1000 cd/m² highlight reaching SDR white (brighter
  ones clip). Measured on BT.709 75 % bars made HDR and back: within 11 of 255 per channel.
"""

from __future__ import annotations

from export_pipeline.media.probe import MediaInfo

SDR_BT709 = "sdr-bt709"
BT601_TO_BT709 = "bt601-to-bt709"
PQ_TO_SDR = "pq-to-sdr"
HLG_TO_SDR = "hlg-to-sdr"
DECISIONS = (SDR_BT709, BT601_TO_BT709, PQ_TO_SDR, HLG_TO_SDR)

# ffprobe's names for what the decision reads.
PQ, HLG = "smpte2084", "arib-std-b67"
BT601_MATRICES = {"smpte170m", "bt470bg"}
# An untagged frame no larger than this (either way round) is SD, hence BT.601.
SD_MAX_SIDES = (1024, 576)
# HDR reference white in cd/m² (ITU-R BT.2408), linear 1.0 when tone-mapping.
REFERENCE_WHITE_NITS = 203
# The brightest highlight kept (cd/m²), as a multiple of reference white for `tonemap`.
HDR_PEAK_NITS = 1000
# Linear light below this share of reference white is not touched by the tone map.
TONEMAP_KNEE = 0.8

# zscale's result depends on how many slices it works in (its chroma resampling crosses their
# edges), and that is the least of its `threads` and the graph's threads (the CPU count by
# default): one slice makes a segment's pictures the same on any worker, so a segment made
# by a step container is the one the single-process render makes.
ZSCALE = "zscale=threads=1:"

# Output options that tag the encoded video SDR BT.709, limited range (every format).
OUTPUT_TAGS = (
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
    "-color_range", "tv",
)  # fmt: skip


def _untagged(info: MediaInfo) -> bool:
    return info.color_space is None and info.color_primaries is None


def is_sd(width: int, height: int) -> bool:
    """Whether a frame is SD size (at most 1024x576, either way round)."""
    return max(width, height) <= SD_MAX_SIDES[0] and min(width, height) <= SD_MAX_SIDES[1]


def colour_decision(info: MediaInfo) -> str:
    """How a clip's pictures become SDR BT.709: one of DECISIONS (module docstring)."""
    if info.color_transfer == PQ:
        return PQ_TO_SDR
    if info.color_transfer == HLG:
        return HLG_TO_SDR
    if info.color_space in BT601_MATRICES:
        return BT601_TO_BT709
    if _untagged(info) and is_sd(info.width, info.height):
        return BT601_TO_BT709
    return SDR_BT709


def _tone_map(transfer: str) -> list[str]:
    """HDR (`transfer`, BT.2020) to SDR BT.709, 8-bit 4:2:0 limited range."""
    peak = round(HDR_PEAK_NITS / REFERENCE_WHITE_NITS, 3)
    return [
        f"{ZSCALE}tin={transfer}:min=bt2020nc:pin=bt2020:t=linear:p=bt2020:npl={REFERENCE_WHITE_NITS}",
        "format=gbrpf32le",
        f"{ZSCALE}p=bt709",
        f"tonemap=mobius:param={TONEMAP_KNEE}:desat=0:peak={peak}",
        f"{ZSCALE}t=bt709:m=bt709:r=tv",
        "format=yuv420p",
    ]


def colour_filters(decision: str) -> list[str]:
    """The filters that bring a clip of this decision to SDR BT.709 (none when it is)."""
    if decision == SDR_BT709:
        return []
    if decision == BT601_TO_BT709:
        return [f"{ZSCALE}min=170m:m=bt709:r=tv", "format=yuv420p"]
    if decision == PQ_TO_SDR:
        return _tone_map(PQ)
    if decision == HLG_TO_SDR:
        return _tone_map(HLG)
    raise ValueError(f"unknown colour decision {decision!r}; allowed: {', '.join(DECISIONS)}")
