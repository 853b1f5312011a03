"""What an export request asks for, validated.

`parse_request` turns a raw `export_requests` row into an `ExportSpec` or raises
`InvalidRequest` with one message listing everything wrong, phrased for the app developer
or the creator ("clip 2: trim_start must be a number >= 0, got -1").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from export_pipeline.appdb.store import parse_clips
from export_pipeline.media.layout import ASPECT_RATIOS, QUALITIES, RESOLUTIONS

MAX_CLIPS = 500


class InvalidRequest(ValueError):
    """The request row cannot be exported as written; the message says why."""


@dataclass(frozen=True)
class ClipSpec:
    position: int  # 1-based place in the app's `clips` array
    url: str
    scene_number: int
    trim_start: float = 0.0
    duration: float | None = None
    scene_id: str | None = None

    @property
    def label(self) -> str:
        """How errors name the clip: 'clip 3 (scene 7)'."""
        return f"clip {self.position} (scene {self.scene_number})"


@dataclass(frozen=True)
class ExportSpec:
    request_id: int
    project_id: str
    user_id: str
    resolution: str
    aspect_ratio: str
    quality: str
    clips: tuple[ClipSpec, ...]

    @property
    def ordered_clips(self) -> list[ClipSpec]:
        """Clips in the order they play: by scene number, then by position."""
        return sorted(self.clips, key=lambda c: (c.scene_number, c.position))


def _choice(problems: list[str], name: str, value: Any, allowed: Mapping | tuple) -> None:
    if value not in allowed:
        options = ", ".join(allowed)
        problems.append(f"{name} {value!r} is not supported (use one of: {options})")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _parse_clip(position: int, raw: Any, problems: list[str]) -> ClipSpec | None:
    where = f"clip {position}"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be an object with url, scene_number, trim_start, duration")
        return None
    before = len(problems)
    url = raw.get("url")
    if not isinstance(url, str) or urlsplit(url.strip()).scheme not in ("http", "https"):
        problems.append(f"{where}: url must be an http(s) URL, got {url!r}")
    scene = raw.get("scene_number", position)
    if isinstance(scene, bool) or not isinstance(scene, int):
        problems.append(f"{where}: scene_number must be an integer, got {scene!r}")
    trim = raw.get("trim_start", 0)
    trim = 0.0 if trim is None else _number(trim)
    if trim is None or trim < 0:
        problems.append(f"{where}: trim_start must be a number >= 0, got {raw.get('trim_start')!r}")
    duration = raw.get("duration")
    if duration is not None:
        duration = _number(duration)
        if duration is None or duration <= 0:
            problems.append(
                f"{where}: duration must be a number > 0 or null (to the end of the clip), "
                f"got {raw.get('duration')!r}"
            )
    scene_id = raw.get("scene_id")
    if len(problems) > before:
        return None
    return ClipSpec(
        position=position,
        url=url.strip(),
        scene_number=scene,
        trim_start=trim,
        duration=duration,
        scene_id=None if scene_id is None else str(scene_id),
    )


def parse_request(row: Mapping[str, Any]) -> ExportSpec:
    problems: list[str] = []
    for name in ("project_id", "user_id"):
        if not str(row.get(name) or "").strip():
            problems.append(f"{name} is empty")
    _choice(problems, "resolution", row.get("resolution"), RESOLUTIONS)
    _choice(problems, "aspect_ratio", row.get("aspect_ratio"), ASPECT_RATIOS)
    _choice(problems, "quality", row.get("quality"), QUALITIES)

    clips: list[ClipSpec] = []
    try:
        raw_clips = parse_clips(row.get("clips"))
    except (ValueError, TypeError) as exc:
        problems.append(f"clips is not valid JSON ({exc})")
    else:
        if not isinstance(raw_clips, list):
            problems.append("clips must be a JSON array of clip objects")
        elif not raw_clips:
            problems.append("clips is empty: add at least one clip")
        elif len(raw_clips) > MAX_CLIPS:
            problems.append(f"clips has {len(raw_clips)} entries; the maximum is {MAX_CLIPS}")
        else:
            for position, raw in enumerate(raw_clips, start=1):
                clip = _parse_clip(position, raw, problems)
                if clip:
                    clips.append(clip)

    if problems:
        raise InvalidRequest("invalid export request: " + "; ".join(problems))
    return ExportSpec(
        request_id=int(row["id"]) if row.get("id") is not None else 0,
        project_id=str(row["project_id"]),
        user_id=str(row["user_id"]),
        resolution=str(row["resolution"]),
        aspect_ratio=str(row["aspect_ratio"]),
        quality=str(row["quality"]),
        clips=tuple(clips),
    )
