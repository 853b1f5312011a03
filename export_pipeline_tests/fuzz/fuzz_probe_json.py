"""Fuzz target: ffprobe's JSON -> `MediaInfo` (`media.probe.parse_probe`).

Contract: `parse_probe(path, data)` returns a MediaInfo whose width and height are > 0, whose
duration is finite and > 0, whose frame rate is >= 0 and whose sample aspect ratio is finite
and > 0 (and `as_metadata()` works), or raises InvalidMedia; anything else escapes `probe`
and fails the clip step with a traceback instead of a message for the creator.

Input layout (the last byte picks the mode, see `values.py`):

- mode 0: the rest of the input is ffprobe's JSON text (the seeds are real ffprobe output
  followed by one zero byte); text that is not a JSON object is skipped;
- mode 1: a generated description shaped like ffprobe's: streams (video, audio, others) with
  sizes, rates, aspect ratios, durations, rotations (side data or tag), field orders,
  dispositions and tags, and a format; values mostly of the types ffprobe writes, with edge contents
  (32-bit extremes, "0/0", "N/A", "nan"), sometimes of any type.

    python -m export_pipeline_tests.fuzz.fuzz_probe_json -max_total_time=600 \\
        CORPUS export_pipeline_tests/fuzz/corpus/probe_json
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from export_pipeline_tests.fuzz.harness import Finding, fuzz_main, instrumented
from export_pipeline_tests.fuzz.values import Provider, any_value, pick, text

with instrumented(__name__):
    from export_pipeline.media.probe import InvalidMedia, MediaInfo, parse_probe

PATH = Path("x.mp4")
INT32 = (-(2**31), 2**31 - 1)
RATES = ["30000/1001", "24/1", "25/1", "0/0", "0/1", "1/0", "-30/1", "1:1", "16:15", "0:1"]
RATES += ["2147483647/1", "1/2147483647", "N/A", "", "/", "30/", "/1", "3.5/1", "1e400", "nan"]
RATES += ["inf", " 30/1", "30/1 ", "\u0663\u0660/1", "30_000/1001", "1" * 5000 + "/1"]
DURATIONS = ["2.000000", "0.000000", "-1.000000", "N/A", "", "nan", "inf", "-inf", "1e309"]
DURATIONS += ["0.000001", "9223372036854.775807", "1" * 400, "1_000", " 2", "\u0662"]
CODEC_TYPES = ["video", "audio", "subtitle", "data", "attachment", "VIDEO", ""]
ROTATIONS: list[Any] = [0, 90, -90, 180, 270, -270, 45, 2**31 - 1, -(2**31), 90.0, 1e308]
ROTATIONS += [math.nan, math.inf, "90", "-90", "nan", "inf", "1e400", "N/A", "", "0x5a", True]
DIMENSIONS: list[Any] = [0, 1, -1, 2, 1920, 1080, 16384, 65536, 2**31 - 1, -(2**31)]
DIMENSIONS += ["1920", "0", "", 1.5, 1e308, math.nan, math.inf, True, None]


def _maybe_wild(fdp: Provider, value: Any) -> Any:
    """`value`, or one time in eight a value of any type."""
    return any_value(fdp) if fdp.ConsumeIntInRange(0, 7) == 0 else value


def _rate(fdp: Provider) -> Any:
    if fdp.ConsumeBool():
        return f"{fdp.ConsumeIntInRange(*INT32)}/{fdp.ConsumeIntInRange(*INT32)}"
    return _maybe_wild(fdp, pick(fdp, RATES))


def _duration(fdp: Provider) -> Any:
    if fdp.ConsumeBool():
        return f"{fdp.ConsumeRegularFloat():f}"
    return _maybe_wild(fdp, pick(fdp, DURATIONS))


def _dimension(fdp: Provider) -> Any:
    if fdp.ConsumeBool():
        return fdp.ConsumeIntInRange(*INT32)
    return _maybe_wild(fdp, pick(fdp, DIMENSIONS))


def _stream(fdp: Provider) -> Any:
    """One entry of `streams`: a dict with a random subset of the keys parse_probe reads."""
    if fdp.ConsumeIntInRange(0, 15) == 0:
        return any_value(fdp)
    stream: dict[str, Any] = {"codec_type": _maybe_wild(fdp, pick(fdp, CODEC_TYPES))}
    makers = {
        "width": _dimension,
        "height": _dimension,
        "r_frame_rate": _rate,
        "avg_frame_rate": _rate,
        "sample_aspect_ratio": _rate,
        "duration": _duration,
        "codec_name": lambda f: _maybe_wild(f, pick(f, ["h264", "hevc", "vp9", "aac", ""])),
        "pix_fmt": lambda f: _maybe_wild(f, pick(f, ["yuv420p", "yuv444p10le", ""])),
        "field_order": lambda f: _maybe_wild(f, pick(f, ["progressive", "tt", "bb", "unknown"])),
        "bit_rate": lambda f: _maybe_wild(f, str(f.ConsumeIntInRange(-1, 2**40))),
        "extradata_hash": lambda f: _maybe_wild(f, "CRC32:" + text(f, 8)),
        "channels": lambda f: _maybe_wild(f, f.ConsumeIntInRange(-1, 64)),
        "sample_rate": lambda f: _maybe_wild(f, str(f.ConsumeIntInRange(-1, 10**6))),
        "disposition": lambda f: _maybe_wild(f, {"attached_pic": f.ConsumeIntInRange(0, 1)}),
        "side_data_list": lambda f: _maybe_wild(
            f, [{"side_data_type": "Display Matrix", "rotation": pick(f, ROTATIONS)}]
        ),
        "tags": lambda f: _maybe_wild(f, {pick(f, ["rotate", "ROTATE", "title"]): text(f, 12)}),
    }
    for key, make in makers.items():
        if fdp.ConsumeIntInRange(0, 3):
            stream[key] = make(fdp)
    return stream


def description_from(data: bytes) -> dict[str, Any] | None:
    """The ffprobe description this input stands for (None: not worth parsing)."""
    fdp = Provider(data)
    if fdp.ConsumeIntInRange(0, 1) == 0:
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        return decoded if isinstance(decoded, dict) else None
    streams = [_stream(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    fmt = {
        "format_name": _maybe_wild(fdp, pick(fdp, ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"])),
        "duration": _duration(fdp),
        "size": _maybe_wild(fdp, str(fdp.ConsumeIntInRange(-1, 2**40))),
    }
    return {
        "streams": _maybe_wild(fdp, streams),
        "format": _maybe_wild(fdp, fmt),
    }


def _check_info(info: MediaInfo) -> None:
    problems = []
    if not (isinstance(info.width, int) and info.width > 0):
        problems.append(f"width {info.width!r}")
    if not (isinstance(info.height, int) and info.height > 0):
        problems.append(f"height {info.height!r}")
    duration = info.duration
    if not (isinstance(duration, float) and math.isfinite(duration) and duration > 0):
        problems.append(f"duration {duration!r}")
    if not (isinstance(info.fps, Fraction) and info.fps >= 0):
        problems.append(f"fps {info.fps!r}")
    if not (isinstance(info.sar, Fraction) and info.sar > 0):
        problems.append(f"sar {info.sar!r}")
    if problems:
        raise Finding("parse_probe returned an unusable MediaInfo: " + "; ".join(problems))
    info.as_metadata()  # asset metadata of every probed clip: must not raise either


def check_description(data: dict[str, Any]) -> None:
    """The contract of parse_probe, for one description."""
    try:
        info = parse_probe(PATH, data)
    except InvalidMedia as exc:
        if not exc.reason.strip():
            raise Finding("InvalidMedia without a reason") from exc
        return
    _check_info(info)


def test_one_input(data: bytes) -> None:
    description = description_from(data)
    if description is not None:
        check_description(description)


if __name__ == "__main__":
    fuzz_main(test_one_input)
