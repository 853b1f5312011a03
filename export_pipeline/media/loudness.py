"""Loudness (EBU R128): each clip's audio is brought to one integrated loudness by a static
gain measured over the clip's whole span, so nothing pumps inside a clip and its level does
not step between its segments; a limiter is added only where that gain would push the true
peak over the ceiling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from export_pipeline.media.clip import Clip, open_span, span_trim
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg
from export_pipeline.media.runner import FFmpegError

# -14 LUFS is what YouTube, Spotify and TikTok play at.
DEFAULT_LOUDNESS_LUFS = -14.0
TRUE_PEAK_CEILING_DB = -1.0
# Below this a clip counts as silent (ebur128 says -70 for digital silence, and for a span
# shorter than its 400 ms block): it keeps its level, rather than have its hiss raised.
SILENT_BELOW_LUFS = -60.0
# The limiter holds sample peaks this far under the ceiling: between samples, and after the
# AAC or Opus encode, a true peak rose up to 0.8 dB higher (test_loudness).
LIMITER_HEADROOM_DB = 1.0
# Measurements of a limited clip's loudness after its correction (see `normalized`).
LIMITED_PASSES = 2
# The longest measurement when the runner has no timeout of its own.
LOUDNESS_TIMEOUT_S = 600.0

_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-inf) LUFS.*?True peak:\s*Peak:\s*"
    r"(?P<tp>-?[\d.]+|-inf) dBFS",
    re.S,
)


@dataclass(frozen=True)
class Loudness:
    """A clip's measured integrated loudness (LUFS) and true peak (dBTP)."""

    integrated: float
    true_peak: float


class Level(NamedTuple):
    """A clip's loudness correction: a gain in dB, and whether a limiter must hold its
    peaks under the ceiling."""

    gain_db: float = 0.0
    limiter: bool = False


AS_IS = Level()


def loudness_gain(measured: Loudness, target: float) -> Level:
    """The static gain (dB) that brings `measured` to `target`, and whether the result
    needs the limiter (its true peak would pass TRUE_PEAK_CEILING_DB). A silent clip gets
    no gain."""
    if measured.integrated < SILENT_BELOW_LUFS:
        return AS_IS
    gain = round(target - measured.integrated, 2)
    return Level(gain, measured.true_peak + gain > TRUE_PEAK_CEILING_DB)


def level_filters(level: Level) -> list[str]:
    """The filters of a loudness correction: its gain, then the limiter if needed
    (latency=1: the limiter's lookahead does not delay the audio)."""
    filters = [f"volume={level.gain_db:.2f}dB"] if level.gain_db else []
    if level.limiter:
        limit = 10 ** ((TRUE_PEAK_CEILING_DB - LIMITER_HEADROOM_DB) / 20)
        filters.append(f"alimiter=limit={limit:.4f}:attack=5:release=50:level=0:latency=1")
    return filters


def loudness_argv(clip: Clip, level: Level = AS_IS) -> list[str]:
    """Measure the loudness of the clip's span (audio only: no video is decoded), after the
    correction `level`. The `ebur128` summary (integrated loudness, true peak) is printed
    on stderr at level info; `parse_loudness` reads it."""
    trim = span_trim(clip)
    cut = f"atrim={trim}," if trim else ""
    cut += "".join(f"{f}," for f in level_filters(level))
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
        *open_span(clip),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-filter:a", f"{cut}ebur128=peak=true:framelog=verbose",
        "-f", "null", "-",
    ]  # fmt: skip


def parse_loudness(stderr: str) -> Loudness:
    """The last `ebur128` summary in FFmpeg's stderr; ValueError if there is none."""
    found = list(_SUMMARY.finditer(stderr))
    if not found:
        raise ValueError("no ebur128 summary in FFmpeg's output")

    def number(text: str) -> float:
        return -math.inf if text == "-inf" else float(text)

    return Loudness(number(found[-1]["i"]), number(found[-1]["tp"]))


def measure_loudness(clip: Clip, level: Level = AS_IS, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> Loudness:
    """The integrated loudness and true peak of the clip's span (its audio alone), after
    the correction `level`."""
    argv = loudness_argv(clip, level)
    done = ffmpeg.capture(argv, timeout_s=ffmpeg.timeout_s or LOUDNESS_TIMEOUT_S)
    if done.returncode != 0:
        error = FFmpegError(
            ffmpeg.command(argv),
            done.returncode,
            done.stderr[-2000:],
            over_limit=bool(done.over_limit),
        )
        error.add_note(f"while measuring the loudness of {clip.label}")
        raise error
    return parse_loudness(done.stderr)


def normalized(clip: Clip, target: float, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> Level:
    """The correction that brings the clip's span to `target` LUFS. Where the limiter has
    to hold the peaks, it also takes some loudness away (2 LU on speech-like bursts): the
    corrected audio is measured again and the gain raised by what is missing, up to
    LIMITED_PASSES times (each pass decodes the clip's audio only)."""
    level = loudness_gain(measure_loudness(clip, AS_IS, ffmpeg), target)
    for _ in range(LIMITED_PASSES if level.limiter else 0):
        missing = target - measure_loudness(clip, level, ffmpeg).integrated
        if abs(missing) < 0.3:
            break
        level = Level(round(level.gain_db + missing, 2), level.limiter)
    return level


def loudness_levels(
    clips: list[Clip], needed: set[int], target: float | None, ffmpeg: FFmpeg = DEFAULT_FFMPEG
) -> dict[int, Level]:
    """The correction of each clip in `needed` (0-based) that has audio, measured over its
    whole span once, so every segment of a clip gets the same gain; none without a
    `target`."""
    if target is None:
        return {}
    return {
        n: normalized(clip, target, ffmpeg)
        for n, clip in enumerate(clips)
        if n in needed and clip.info.has_audio
    }
