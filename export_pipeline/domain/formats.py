"""The output formats a request may ask for (`format`): codecs, container, how it is served."""

from __future__ import annotations

from dataclasses import dataclass

from export_pipeline.domain.target import allowed_error


@dataclass(frozen=True)
class OutputFormat:
    """What a request's `format` makes: the codecs, the container, how it is served."""

    name: str
    video_codec: str  # h264, hevc or vp9 (see commands.video_encoder_args)
    audio_codec: str  # aac or opus
    extension: str  # of the published file, and the muxer that writes it
    content_type: str


FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("mp4", "h264", "aac", "mp4", "video/mp4"),
        # H.265 in MP4, tagged hvc1 so that Apple's players open it.
        OutputFormat("mp4-hevc", "hevc", "aac", "mp4", "video/mp4"),
        OutputFormat("webm", "vp9", "opus", "webm", "video/webm"),
    )
}
DEFAULT_FORMAT = "mp4"


def output_format(name: str | None) -> OutputFormat:
    """The format called `name` (None: the default, for rows an older app wrote)."""
    name = name or DEFAULT_FORMAT
    if name not in FORMATS:
        raise allowed_error("format", name, FORMATS)
    return FORMATS[name]
