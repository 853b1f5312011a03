"""What an export request asks for, validated.

`parse_request` turns a raw `export_requests` row into an `ExportSpec` or raises
`InvalidRequest` with one message listing everything wrong, phrased for the app developer
or the creator ("clip 2: trim_start must be a number >= 0, got -1").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export_pipeline.domain.addresses import parse_address
from export_pipeline.domain.captions import KINDS as CAPTION_KINDS
from export_pipeline.domain.captions import (
    CaptionError,
    CaptionStyle,
    parse_captions,
    parse_style,
)
from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.formats import DEFAULT_FORMAT, FORMATS
from export_pipeline.domain.soundtrack import Soundtrack, parse_soundtrack
from export_pipeline.domain.target import ASPECT_RATIOS, QUALITIES, RESOLUTIONS
from export_pipeline.domain.urls import url_problem
from export_pipeline.domain.values import decode_json, finite_number, shown

MAX_CLIPS = 500
# Identifiers end up in Dagster run tags, whose PostgreSQL index refuses values over ~2.7 KB
# (a run created without its tags escapes cancel-by-tag and the per-user queue).
MAX_ID_CHARS = 256
# No clip is longer than a day: beyond it a trim or duration is a mistake or an attack
# (1e308 once made a 300-digit cache key). Durations are also held to the export limit.
MAX_SECONDS = 24 * 3600.0
MAX_SCENE_NUMBER = 10**9
# Transitions (on the clip they lead into): the kinds, and how long one may last.
TRANSITION_TYPES = ("crossfade", "fade", "cut")
DEFAULT_TRANSITION_S = 0.5
MIN_TRANSITION_S, MAX_TRANSITION_S = 0.1, 5.0
MAX_PROBLEMS_SHOWN = 20  # the error message stays readable when 500 clips are wrong
# Days a finished video is kept (`retention_days`, from the user's plan). A year at most:
# beyond it a value is a mistake (a timestamp, milliseconds) rather than a plan.
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 1, 365
# Without a `retention_days` of its own: EXPORT_RETENTION_DAYS, by default the product doc's 7.
DEFAULT_RETENTION_DAYS = 7


@dataclass(frozen=True)
class TransitionSpec:
    kind: str  # crossfade, fade (through black) or cut
    duration: float  # seconds the two clips overlap (0 for a cut)


@dataclass(frozen=True)
class CaptionsSpec:
    """Captions as the request gives them: inline text (`srt` or `vtt`), or a URL to fetch."""

    kind: str  # srt or vtt
    text: str | None
    url: str | None
    burn_in: bool
    style: CaptionStyle


@dataclass(frozen=True)
class SoundtrackSpec:
    url: str
    track: Soundtrack


@dataclass(frozen=True)
class ClipSpec:
    position: int  # 1-based place in the app's `clips` array
    url: str
    scene_number: int
    trim_start: float = 0.0
    duration: float | None = None
    scene_id: str | None = None
    transition: TransitionSpec | None = None  # from the clip before into this one

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
    format: str = DEFAULT_FORMAT  # a name in domain.formats.FORMATS
    audio_normalize: bool = True  # each clip's audio brought to one loudness
    soundtrack: SoundtrackSpec | None = None
    captions: CaptionsSpec | None = None
    retention_days: int | None = None  # None: EXPORT_RETENTION_DAYS
    notify_email: str | None = None  # where to email the outcome and the expiry reminder

    @property
    def ordered_clips(self) -> list[ClipSpec]:
        """Clips in the order they play: by scene number, then by position."""
        return sorted(self.clips, key=lambda c: (c.scene_number, c.position))


def _choice(problems: list[str], name: str, value: Any, allowed: Mapping | tuple) -> None:
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(allowed)
        problems.append(f"{name} {shown(value)} is not supported (use one of: {options})")


_TRUE, _FALSE = ("true", "t", "1"), ("false", "f", "0")


def _flag(problems: list[str], name: str, value: Any, default: bool) -> bool:
    """A boolean column as the store reads it (text: 'true', '1', ...), NULL: `default`."""
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    problems.append(f"{name} {shown(value)} must be true or false (or NULL: {default})")
    return default


def _parse_clip(
    position: int, raw: Any, problems: list[str], max_duration_s: float
) -> ClipSpec | None:
    where = f"clip {position}"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be an object with url, scene_number, trim_start, duration")
        return None
    before = len(problems)
    url = raw.get("url")
    problem = url_problem(url.strip()) if isinstance(url, str) else "not a string"
    if problem:
        problems.append(f"{where}: url must be an http(s) URL ({problem}), got {shown(url)}")
    scene = raw.get("scene_number", position)
    if isinstance(scene, bool) or not isinstance(scene, int) or abs(scene) > MAX_SCENE_NUMBER:
        problems.append(
            f"{where}: scene_number must be an integer of at most {MAX_SCENE_NUMBER}, "
            f"got {shown(scene)}"
        )
    trim = raw.get("trim_start", 0)
    trim = 0.0 if trim is None else finite_number(trim)
    if trim is None or not 0 <= trim <= MAX_SECONDS:
        problems.append(
            f"{where}: trim_start must be a number >= 0 and <= {MAX_SECONDS:g} (seconds), "
            f"got {shown(raw.get('trim_start'))}"
        )
    duration = raw.get("duration")
    if duration is not None:
        duration = finite_number(duration)
        if duration is None or not 0 < duration <= max_duration_s:
            problems.append(
                f"{where}: duration must be a number > 0 and <= {max_duration_s:g} (seconds, "
                f"the longest export), or null (to the end of the clip), "
                f"got {shown(raw.get('duration'))}"
            )
    scene_id = raw.get("scene_id")
    if scene_id is not None and len(str(scene_id)) > MAX_ID_CHARS:
        problems.append(f"{where}: scene_id is longer than {MAX_ID_CHARS} characters")
    transition = _parse_transition(where, raw.get("transition"), problems)
    if len(problems) > before:
        return None
    return ClipSpec(
        position=position,
        url=url.strip(),
        scene_number=scene,
        trim_start=trim,
        duration=duration,
        scene_id=None if scene_id is None else str(scene_id),
        transition=transition,
    )


def _parse_transition(where: str, raw: Any, problems: list[str]) -> TransitionSpec | None:
    """`{"type": "crossfade"|"fade"|"cut", "duration": 0.5}` on the clip it leads into."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(f'{where}: transition must be an object like {{"type": "crossfade", '
                        f'"duration": 0.5}}, got {shown(raw)}')  # fmt: skip
        return None
    unknown = sorted(set(raw) - {"type", "duration"})
    if unknown:
        problems.append(f"{where}: transition has unknown keys {unknown} (use type, duration)")
    kind = raw.get("type", "crossfade")
    if kind not in TRANSITION_TYPES:
        problems.append(f"{where}: transition type {shown(kind)} is not supported (use one of: "
                        f"{', '.join(TRANSITION_TYPES)})")  # fmt: skip
        return None
    if kind == "cut":
        return TransitionSpec("cut", 0.0)
    duration = raw.get("duration", DEFAULT_TRANSITION_S)
    seconds = finite_number(duration)
    if seconds is None or not MIN_TRANSITION_S <= seconds <= MAX_TRANSITION_S:
        problems.append(f"{where}: transition duration must be a number from "
                        f"{MIN_TRANSITION_S:g} to {MAX_TRANSITION_S:g} (seconds), "
                        f"got {shown(duration)}")  # fmt: skip
        return None
    return TransitionSpec(kind, seconds)


def retention_days_problem(value: Any) -> str | None:
    """Why `retention_days` as read from the row is not a number of days we keep a video
    for (None: it is, or it is NULL). Integers only (7.0 from a REAL column counts as 7)."""
    if value is None:
        return None
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
    integer = (isinstance(value, int) and not isinstance(value, bool)) or whole
    if integer and MIN_RETENTION_DAYS <= int(value) <= MAX_RETENTION_DAYS:
        return None
    return (
        f"retention_days must be a whole number of days from {MIN_RETENTION_DAYS} to "
        f"{MAX_RETENTION_DAYS} (how long the finished video is kept, from the user's plan, "
        f"e.g. 7 or 30), or NULL for the default, got {shown(value)}"
    )


def retention_days_of(row: Mapping[str, Any], default: int) -> int:
    """The row's own retention in days, or `default` when it has none (or an invalid one:
    such a row was failed at intake and keeps nothing worth more than the default)."""
    value = row.get("retention_days")
    if value is None or retention_days_problem(value):
        return default
    return int(value)


def _parse_notify_email(raw: Any, problems: list[str]) -> str | None:
    """`notify_email`: one address (domain.addresses), or NULL for no email."""
    if raw is None:
        return None
    try:
        return parse_address(raw)
    except ValueError as exc:
        problems.append(
            f"notify_email must be one email address like name@example.com, or NULL for no "
            f"email ({exc}), got {shown(raw)}"
        )
        return None


def _parse_soundtrack(raw: Any, problems: list[str]) -> SoundtrackSpec | None:
    if raw is None:
        return None
    try:
        value = decode_json(raw)
        url, track = parse_soundtrack(value)
    except (InvalidRequest, ValueError, TypeError) as exc:  # SoundtrackError, or bad JSON
        text = str(exc)
        problems.append(text if text.startswith("soundtrack") else f"soundtrack: {text[:200]}")
        return None
    problem = url_problem(url)
    if problem:
        problems.append(f"soundtrack: url must be an http(s) URL ({problem}), got {shown(url)}")
        return None
    return SoundtrackSpec(url, track)


def _parse_captions(raw: Any, problems: list[str]) -> CaptionsSpec | None:
    """`{"srt": text}`, `{"vtt": text}` or `{"url": ..., "format": "srt"|"vtt"}`, with
    `burn_in` (default true) and `style`. Inline text is parsed here, so a broken file is
    refused before any work; a URL's text when the clips are downloaded."""
    if raw is None:
        return None
    try:
        value = decode_json(raw)
    except (ValueError, TypeError) as exc:
        problems.append(f"captions is not valid JSON ({str(exc)[:200]})")
        return None
    if not isinstance(value, Mapping):
        problems.append(f"captions must be an object, got {shown(value)}")
        return None
    unknown = sorted(set(value) - {"srt", "vtt", "url", "format", "burn_in", "style"})
    sources = [k for k in ("srt", "vtt", "url") if value.get(k) is not None]
    if unknown:
        problems.append(f"captions has unknown keys {unknown} (use srt, vtt or url, format, "
                        "burn_in, style)")  # fmt: skip
    if len(sources) != 1:
        problems.append("captions needs exactly one of srt, vtt (the text) or url")
        return None
    burn_in = value.get("burn_in", True)
    if not isinstance(burn_in, bool):
        problems.append(f"captions: burn_in must be true or false, got {shown(burn_in)}")
    try:
        style = parse_style(value.get("style"))
    except CaptionError as exc:
        problems.append(str(exc))
        return None
    (source,) = sources
    if source == "url":
        url = value["url"]
        problem = url_problem(url.strip()) if isinstance(url, str) else "not a string"
        kind = value.get("format") or (url.rsplit(".", 1)[-1].lower() if isinstance(url, str)
                                       else None)  # fmt: skip
        if problem:
            problems.append(f"captions: url must be an http(s) URL ({problem}), got {shown(url)}")
        elif kind not in CAPTION_KINDS:
            problems.append('captions: say whether the file at url is srt or vtt ("format")')
        else:
            return CaptionsSpec(kind, None, url.strip(), burn_in is True, style)
        return None
    text = value[source]
    try:
        if not isinstance(text, str):
            raise CaptionError(f"captions: {source} must be the file's text, got {shown(text)}")
        parse_captions(text, source)
    except CaptionError as exc:
        problems.append(str(exc))
        return None
    return CaptionsSpec(source, text, None, burn_in is True, style)


def _parse_clips(raw: Any, problems: list[str], max_duration_s: float) -> list[ClipSpec]:
    """The `clips` column: a JSON array of clip objects, each checked, and the timeline
    they make (the first clip has no transition into it; the durations fit the limit)."""
    clips: list[ClipSpec] = []
    try:
        raw_clips = decode_json(raw)
    except (ValueError, TypeError) as exc:
        problems.append(f"clips is not valid JSON ({str(exc)[:200]})")
    else:
        if not isinstance(raw_clips, list):
            problems.append("clips must be a JSON array of clip objects")
        elif not raw_clips:
            problems.append("clips is empty: add at least one clip")
        elif len(raw_clips) > MAX_CLIPS:
            problems.append(f"clips has {len(raw_clips)} entries; the maximum is {MAX_CLIPS}")
        else:
            for position, item in enumerate(raw_clips, start=1):
                clip = _parse_clip(position, item, problems, max_duration_s)
                if clip:
                    clips.append(clip)
            first = min(clips, key=lambda c: (c.scene_number, c.position), default=None)
            if first and first.transition and first.transition.kind != "cut":
                problems.append(
                    f"{first.label}: a transition leads into a clip from the one before it, "
                    "and this clip plays first: remove its transition"
                )
            requested = sum(c.duration for c in clips if c.duration is not None)
            if requested > max_duration_s:
                problems.append(
                    f"the clips' durations add up to {requested:g} s; the longest export is "
                    f"{max_duration_s:g} s: shorten or remove clips"
                )
    return clips


def parse_request(row: Mapping[str, Any], max_duration_s: float = MAX_SECONDS) -> ExportSpec:
    """The request in `row`, or InvalidRequest, whatever the row holds: nothing else is
    raised, so one malformed row can never stop whoever reads it. `max_duration_s` is the
    longest export (the sensor passes EXPORT_MAX_DURATION_S)."""
    try:
        return _parse_request(row, max_duration_s)
    except InvalidRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug here must not stop intake either
        raise InvalidRequest(
            f"invalid export request: the row could not be read ({type(exc).__name__}: "
            f"{str(exc)[:200]})"
        ) from exc


def _parse_request(row: Mapping[str, Any], max_duration_s: float) -> ExportSpec:
    problems: list[str] = []
    for name in ("project_id", "user_id"):
        value = str(row.get(name) or "")
        if not value.strip():
            problems.append(f"{name} is empty")
        elif len(value) > MAX_ID_CHARS:
            problems.append(f"{name} is {len(value)} characters long; the limit is {MAX_ID_CHARS}")
    _choice(problems, "resolution", row.get("resolution"), RESOLUTIONS)
    _choice(problems, "aspect_ratio", row.get("aspect_ratio"), ASPECT_RATIOS)
    _choice(problems, "quality", row.get("quality"), QUALITIES)
    if row.get("format") is not None:  # NULL: a row from an app that predates the column
        _choice(problems, "format", row.get("format"), FORMATS)

    audio_normalize = _flag(problems, "audio_normalize", row.get("audio_normalize"), True)
    retention = retention_days_problem(row.get("retention_days"))
    if retention:
        problems.append(retention)
    notify_email = _parse_notify_email(row.get("notify_email"), problems)

    clips = _parse_clips(row.get("clips"), problems, max_duration_s)

    soundtrack = _parse_soundtrack(row.get("soundtrack"), problems)
    captions = _parse_captions(row.get("captions"), problems)

    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"and {len(problems) - len(shown)} more problems")
        raise InvalidRequest("invalid export request: " + "; ".join(shown))
    return ExportSpec(
        request_id=int(row["id"]) if row.get("id") is not None else 0,
        project_id=str(row["project_id"]),
        user_id=str(row["user_id"]),
        resolution=str(row["resolution"]),
        aspect_ratio=str(row["aspect_ratio"]),
        quality=str(row["quality"]),
        clips=tuple(clips),
        format=str(row.get("format") or DEFAULT_FORMAT),
        audio_normalize=audio_normalize,
        soundtrack=soundtrack,
        captions=captions,
        retention_days=None if row.get("retention_days") is None else int(row["retention_days"]),
        notify_email=notify_email,
    )
