"""Fuzz target: request intake (`intake.spec.parse_request`) and the row reader
(`domain.values.decode_json`, `for_display`).

Contract: `parse_request(row)` returns an ExportSpec that respects the documented bounds, or
raises InvalidRequest with a short, non-empty message; anything else would stop the sensor
(or let a request through that later steps cannot handle). The row reader raises nothing but
ValueError.

Input layout (the last byte picks the mode, see `values.py`):

- mode 0: the other columns are chosen from realistic values by the trailing bytes and the
  rest of the input, as UTF-8 (invalid bytes become lone surrogates), is the `clips` text;
  a seed is the `clips` text followed by eight zero bytes;
- mode 1: `clips` is JSON text of a generated structure (nested objects, huge numbers,
  unicode, odd URLs), sometimes cut short or spliced;
- mode 2: `clips` is the generated structure itself (a driver that decoded the JSON);
- mode 3: every column is a value of any type.

    python -m export_pipeline_tests.fuzz.fuzz_request -max_total_time=600 \\
        -dict=export_pipeline_tests/fuzz/request.dict CORPUS export_pipeline_tests/fuzz/corpus/request
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

from export_pipeline_tests.fuzz.harness import Finding, fuzz_main, instrumented
from export_pipeline_tests.fuzz.values import Provider, any_value, number, pick, text, url

with instrumented(__name__):
    from export_pipeline.domain.failures import InvalidRequest
    from export_pipeline.domain.request import ExportSpec, parse_request
    from export_pipeline.domain.target import ASPECT_RATIOS, QUALITIES, RESOLUTIONS
    from export_pipeline.domain.values import decode_json
    from export_pipeline.io.appdb.store import for_display

# The documented bounds (README, "Clips"): checked on every spec that parse_request returns.
MAX_ID_CHARS = 256
MAX_CLIPS = 500
MAX_TRIM_S = 86400.0
MAX_SCENE_NUMBER = 10**9
MAX_URL_CHARS = 2048
# Messages quote values cut short: 20 problems of a few hundred characters at most.
MAX_MESSAGE_CHARS = 16_000

DEFAULT_MAX_DURATION_S = 86400.0
MAX_DURATIONS = [DEFAULT_MAX_DURATION_S, 600.0, 1.0, 1e-9]
IDS = [1, None, 0, -1, 2**63, 10**30, "7", True, 1.5]
PROJECT_IDS = ["project-1", "", "   ", "p" * 256, "p" * 257, "\x00", "\U0001f600" * 200, "\ud800"]
CLIP_KEYS = ("url", "scene_number", "trim_start", "duration", "scene_id")
GOOD_CLIP = {"url": "https://cdn.example.com/a.mp4", "scene_number": 1, "duration": 2.5}


def _column(fdp: Provider, good: list[Any], wild: bool) -> Any:
    """A realistic choice (index 0 is a valid value) or, when `wild`, anything at all."""
    if wild and fdp.ConsumeIntInRange(0, 2) == 0:
        return any_value(fdp)
    return pick(fdp, good)


def _clip(fdp: Provider) -> Any:
    """One clip entry: mostly an object whose keys are absent, valid, at an edge, or wild."""
    if fdp.ConsumeIntInRange(0, 7) == 0:
        return any_value(fdp)
    clip: dict[str, Any] = {}
    for key in CLIP_KEYS:
        kind = fdp.ConsumeIntInRange(0, 4)
        if kind == 0:
            continue
        if kind == 1:
            clip[key] = GOOD_CLIP.get(key, "scene-1")
        elif kind == 2:
            clip[key] = url(fdp) if key == "url" else number(fdp)
        elif kind == 3:
            clip[key] = text(fdp, 300) if key in ("url", "scene_id") else number(fdp)
        else:
            clip[key] = any_value(fdp)
    for _ in range(fdp.ConsumeIntInRange(0, 1)):
        clip[text(fdp, 8)] = any_value(fdp)
    return clip


def _clips(fdp: Provider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind == 0:
        return any_value(fdp)
    if kind == 1:
        # Around MAX_CLIPS: the same entry many times.
        return [_clip(fdp)] * fdp.ConsumeIntInRange(MAX_CLIPS - 1, MAX_CLIPS + 1)
    return [_clip(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6))]


def _json_text(fdp: Provider, value: Any) -> str:
    """`value` as JSON text (NaN and Infinity included, as Python writes them), sometimes
    damaged: cut short, or with a random piece spliced in."""
    try:
        encoded = json.dumps(value, ensure_ascii=fdp.ConsumeBool(), default=repr)
    except ValueError:  # an int with more digits than Python converts (4300)
        encoded = repr(value)
    damage = fdp.ConsumeIntInRange(0, 5)
    if damage == 0 and encoded:
        return encoded[: fdp.ConsumeIntInRange(0, len(encoded) - 1)]
    if damage == 1:
        at = fdp.ConsumeIntInRange(0, len(encoded))
        return encoded[:at] + text(fdp, 12) + encoded[at:]
    if damage == 2:
        depth = fdp.ConsumeIntInRange(1, 5000)  # the decoder gives up near 1000
        return "[" * depth + encoded + "]" * fdp.ConsumeIntInRange(0, depth)
    return encoded


def row_from(data: bytes) -> tuple[dict[str, Any], float]:
    """The `export_requests` row and `max_duration_s` this input stands for."""
    fdp = Provider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    wild = mode == 3
    row: dict[str, Any] = {
        "id": _column(fdp, IDS, wild),
        "project_id": _column(fdp, PROJECT_IDS, wild),
        "user_id": _column(fdp, ["user-1", *PROJECT_IDS], wild),
        "resolution": _column(fdp, [*RESOLUTIONS, "720P", " 720p", "8k", ""], wild),
        "aspect_ratio": _column(fdp, [*ASPECT_RATIOS, "16/9", "0:0", ""], wild),
        "quality": _column(fdp, [*QUALITIES, "LOW", "best", ""], wild),
    }
    max_duration_s = pick(fdp, MAX_DURATIONS)
    if mode == 0:
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
        row["clips"] = raw.decode("utf-8", errors="surrogateescape")
    elif mode == 1:
        row["clips"] = _json_text(fdp, _clips(fdp))
    else:
        row["clips"] = _clips(fdp)
    return row, max_duration_s


def _usable_url(url: object) -> bool:
    """An http(s) URL (the scheme in any case, as RFC 3986 allows) without blanks or
    control characters, within the length limit."""
    return (
        isinstance(url, str)
        and url.lower().startswith(("http://", "https://"))
        and len(url) <= MAX_URL_CHARS
        and not any(c.isspace() or not c.isprintable() for c in url)
    )


def _check_spec(spec: ExportSpec, max_duration_s: float) -> None:
    """The bounds every accepted request must respect."""
    problems: list[str] = []
    for name in ("project_id", "user_id"):
        value = getattr(spec, name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
            problems.append(f"{name} {value!r:.100}")
    if spec.resolution not in RESOLUTIONS or spec.aspect_ratio not in ASPECT_RATIOS:
        problems.append(f"target {spec.resolution!r} {spec.aspect_ratio!r}")
    if spec.quality not in QUALITIES:
        problems.append(f"quality {spec.quality!r}")
    if not isinstance(spec.request_id, int):
        problems.append(f"request_id {spec.request_id!r}")
    if not 1 <= len(spec.clips) <= MAX_CLIPS:
        problems.append(f"{len(spec.clips)} clips")
    for clip in spec.clips:
        where = f"clip {clip.position}"
        if not _usable_url(clip.url):
            problems.append(f"{where}: url {clip.url!r:.100}")
        trim = clip.trim_start
        if not (isinstance(trim, float) and math.isfinite(trim) and 0 <= trim <= MAX_TRIM_S):
            problems.append(f"{where}: trim_start {trim!r}")
        duration = clip.duration
        if duration is not None and not (
            isinstance(duration, float)
            and math.isfinite(duration)
            and 0 < duration <= max_duration_s
        ):
            problems.append(f"{where}: duration {duration!r}")
        scene = clip.scene_number
        if isinstance(scene, bool) or not isinstance(scene, int) or abs(scene) > MAX_SCENE_NUMBER:
            problems.append(f"{where}: scene_number {scene!r:.100}")
        if clip.scene_id is not None and (
            not isinstance(clip.scene_id, str) or len(clip.scene_id) > MAX_ID_CHARS
        ):
            problems.append(f"{where}: scene_id {clip.scene_id!r:.100}")
    if [c.position for c in spec.clips] != list(range(1, len(spec.clips) + 1)):
        problems.append("positions are not 1..n")
    total = sum(c.duration or 0.0 for c in spec.clips)
    if total > max_duration_s:
        problems.append(f"durations add up to {total}")
    if problems:
        raise Finding("parse_request accepted a request out of bounds: " + "; ".join(problems))


def check_row(row: Mapping[str, Any], max_duration_s: float) -> None:
    """The contract of parse_request and of the row reader, for one row."""
    try:
        spec = parse_request(row, max_duration_s)
    except InvalidRequest as exc:
        message = str(exc)
        if not message.strip() or len(message) > MAX_MESSAGE_CHARS:
            raise Finding(f"InvalidRequest message of {len(message)} characters") from exc
    else:
        if not isinstance(spec, ExportSpec):
            raise Finding(f"parse_request returned {type(spec).__name__}")
        _check_spec(spec, max_duration_s)
        if parse_request(row, max_duration_s) != spec:
            raise Finding("parse_request gave two different specs for one row")
    with contextlib.suppress(ValueError):  # the one exception the row reader may raise
        decode_json(row["clips"])
    displayed = for_display(dict(row))  # must not raise at all: it falls back to the row
    if not isinstance(displayed, dict) or set(displayed) != set(row):
        raise Finding("for_display changed the row's columns")


def test_one_input(data: bytes) -> None:
    row, max_duration_s = row_from(data)
    check_row(row, max_duration_s)


if __name__ == "__main__":
    fuzz_main(test_one_input)
