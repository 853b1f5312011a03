"""A soundtrack as a request gives it: the music's URL and how it is mixed under the clips
(`media.soundtrack` builds the mix for FFmpeg)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.values import finite_number, shown

# Request defaults (what editors use: music under speech is quiet, fades are short).
DEFAULT_VOLUME = 0.3
DEFAULT_FADE_IN_S = 1.0
DEFAULT_FADE_OUT_S = 2.0
DEFAULT_LOOP = True
MAX_FADE_S = 30.0
KEYS = ("url", "volume", "fade_in", "fade_out", "loop")


class SoundtrackError(InvalidRequest):
    """The request's soundtrack cannot be used as written; the message says why."""


@dataclass(frozen=True)
class Soundtrack:
    """How the music is mixed: linear `volume` (0-1), fades in seconds, and whether it loops."""

    volume: float = DEFAULT_VOLUME
    fade_in: float = DEFAULT_FADE_IN_S
    fade_out: float = DEFAULT_FADE_OUT_S
    loop: bool = DEFAULT_LOOP


def parse_soundtrack(value: Any) -> tuple[str, Soundtrack]:
    """The request's `soundtrack` object as its url and mix settings.

    `url` is required (a non-empty string; whether it is an acceptable http(s) URL is
    checked where it is downloaded); `volume` (0-1), `fade_in`, `fade_out` (0-30 s) and
    `loop` are optional, and null means the default. Unknown keys are refused rather than
    ignored: a misspelt "volum" would otherwise silently play the music at the default.
    SoundtrackError lists every problem at once.
    """
    if not isinstance(value, Mapping):
        raise SoundtrackError(
            f"soundtrack must be an object with url, volume, fade_in, fade_out, loop, "
            f"got {shown(value)}"
        )
    problems: list[str] = []
    unknown = [key for key in value if key not in KEYS]
    if unknown:
        names = ", ".join(shown(key) for key in unknown)
        problems.append(f"unknown key {names} (allowed: {', '.join(KEYS)})")
    url = value.get("url")
    if not isinstance(url, str) or not url.strip():
        problems.append(f"url must be a non-empty string, got {shown(url)}")

    def setting(key: str, default: float, high: float, what: str) -> float:
        raw = value.get(key)
        if raw is None:
            return default
        number = finite_number(raw)
        if number is None or not 0 <= number <= high:
            problems.append(f"{key} must be a number from 0 to {high:g}{what}, got {shown(raw)}")
            return default
        return number

    volume = setting("volume", DEFAULT_VOLUME, 1, "")
    fade_in = setting("fade_in", DEFAULT_FADE_IN_S, MAX_FADE_S, " (seconds)")
    fade_out = setting("fade_out", DEFAULT_FADE_OUT_S, MAX_FADE_S, " (seconds)")
    loop = value.get("loop")
    if loop is None:
        loop = DEFAULT_LOOP
    elif not isinstance(loop, bool):
        problems.append(f"loop must be true or false, got {shown(loop)}")
    if problems:
        raise SoundtrackError("soundtrack: " + "; ".join(problems))
    return url.strip(), Soundtrack(volume=volume, fade_in=fade_in, fade_out=fade_out, loop=loop)
