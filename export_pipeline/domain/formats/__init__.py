"""The output formats a request may ask for (`format`), one profile per file (`profile.py`
says what a profile holds), registered here."""

from __future__ import annotations

from export_pipeline.domain.formats import mp4, mp4_hevc, webm
from export_pipeline.domain.formats.profile import (
    AudioEncoder,
    Container,
    EncoderParams,
    OutputFormat,
    SoftSubtitles,
    VideoEncoder,
)
from export_pipeline.domain.target import allowed_error

__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "AudioEncoder",
    "Container",
    "EncoderParams",
    "OutputFormat",
    "SoftSubtitles",
    "VideoEncoder",
    "output_format",
    "register",
    "segment_content_type",
]

FORMATS: dict[str, OutputFormat] = {}
DEFAULT_FORMAT = "mp4"


def register(profile: OutputFormat) -> OutputFormat:
    """Make `profile` a format requests may ask for (its `name`, which must be new)."""
    if profile.name in FORMATS:
        raise ValueError(f"format {profile.name!r} is already registered")
    FORMATS[profile.name] = profile
    return profile


# One line per format, in the order messages list them.
register(mp4.PROFILE)
register(mp4_hevc.PROFILE)
register(webm.PROFILE)


def output_format(name: str | None) -> OutputFormat:
    """The format called `name` (None: the default, for rows an older app wrote)."""
    name = name or DEFAULT_FORMAT
    if name not in FORMATS:
        raise allowed_error("format", name, FORMATS)
    return FORMATS[name]


def segment_content_type(extension: str) -> str | None:
    """The content type of a segment file with this extension (e.g. for a segment cache)."""
    for profile in FORMATS.values():
        if profile.segments.extension == extension:
            return profile.segments.content_type
    return None
