"""A clip of the export, as probed, and how FFmpeg reads the span of it that is used."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.media.colour import SDR_BT709, colour_decision
from export_pipeline.media.encoding import EncodeSettings
from export_pipeline.media.inputs import MAX_INPUT_PIXELS, Source, as_seconds, clip_input
from export_pipeline.media.probe import MediaInfo


@dataclass(frozen=True)
class Transition:
    """A transition into a clip: `crossfade` (the pictures blend) or `fade` (through black)
    over `duration` seconds, while the sound crossfades. The two clips overlap by that much,
    so each transition shortens the video by its duration."""

    kind: str  # one of filters.TRANSITIONS
    duration: float


@dataclass(frozen=True)
class Clip:
    """One clip of an export, as probed: `trim_start` and `duration` (None: to the end) as
    the request asks, `label` names it in errors ("clip 3 (scene 7)"), `content_hash` (of
    the source file) makes its segments cacheable, `transition` leads into it from the
    clip before (None: a cut). A segment plays a span of it: a Clip of its own."""

    path: Source  # a local file, or a file of our storage read over HTTP (RemoteFile)
    trim_start: float
    duration: float | None
    info: MediaInfo
    label: str
    content_hash: str | None = None
    transition: Transition | None = None

    def frames_span(self, start: int, frames: int, fps: Fraction) -> Clip:
        """`frames` frames of this clip's span from its frame `start`, as a clip of its own."""
        trim = self.trim_start + float(start / fps)
        return replace(self, trim_start=trim, duration=float(frames / fps))


class ClipError(ExportFailure):
    """A clip that cannot be rendered as asked (permanent); the message starts with the
    clip's label. Its cause: the request (a trim past the clip's end, transitions longer
    than the clip) unless told otherwise (a file with nothing to decode)."""

    def __init__(
        self, label: str, problem: str, cause: FailureCause = FailureCause.INVALID_REQUEST
    ) -> None:
        self.label = label
        self.problem = problem
        super().__init__(f"{label}: {problem}", cause=cause, permanent=True)


def secs(value: float) -> str:
    """9 -> "9.0", 2.125 -> "2.125": readable seconds for messages."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def effective_duration(clip: Clip) -> float:
    """Seconds of the clip used: the requested duration, cut at the end of the clip.

    Raises ClipError when the trim or the duration make no sense for this clip.
    """
    length = clip.info.duration
    if not math.isfinite(clip.trim_start) or clip.trim_start < 0:
        raise ClipError(clip.label, f"trim_start {clip.trim_start} s must be a number >= 0")
    if clip.trim_start >= length:
        raise ClipError(
            clip.label,
            f"trim_start {secs(clip.trim_start)} s is beyond the clip's length {secs(length)} s",
        )
    available = length - clip.trim_start
    if clip.duration is None:
        return available
    if not math.isfinite(clip.duration) or clip.duration <= 0:
        raise ClipError(clip.label, f"duration {clip.duration} s must be a number > 0")
    return min(clip.duration, available)


def can_copy(clip: Clip, settings: EncodeSettings) -> bool:
    """Whether the clip's video can go into the export untouched: in the format's codec (one
    that `copies_clips`), yuv420p with square pixels at the target size and rate, within the
    quality's bitrate cap, used whole, already SDR BT.709 in limited range (`media.colour`;
    its headers are retagged so, `VideoEncoder.retag_copy`)."""
    info = clip.info
    whole = clip.trim_start == 0 and (
        clip.duration is None or clip.duration >= info.duration - 1 / float(settings.fps)
    )
    return (
        whole
        and settings.format.copies_clips
        and info.video_codec == settings.format.video.codec
        and info.pix_fmt == "yuv420p"
        and (info.width, info.height) == (settings.width, settings.height)
        and info.sar == 1
        and info.fps == settings.fps
        and info.video_bitrate is not None
        and info.video_bitrate <= settings.maxrate * 1.1
        and info.extradata_hash is not None
        and colour_decision(info) == SDR_BT709
        and info.color_range != "pc"
        and bool(settings.format.video.retag_copy)
    )


def copy_path(clips: list[Clip], settings: EncodeSettings) -> bool:
    """Stream copy is only safe when every clip qualifies and all share one set of codec
    headers: the joined file carries the first clip's headers for all of them."""
    return all(can_copy(c, settings) for c in clips) and (
        len({c.info.extradata_hash for c in clips}) == 1
    )


# --- reading the span ---------------------------------------------------------------------


def max_pixels(clip: Clip) -> int:
    """The decoder's ceiling for a clip: the default one, or its own frame when larger
    (probe accepted it under a ceiling raised by configuration)."""
    return max(MAX_INPUT_PIXELS, clip.info.width * clip.info.height)


def _seek(clip: Clip) -> list[str]:
    """Input options that cut the clip's span, when the container can seek exactly; else
    the whole clip is read up to the span's end and the filters cut it (`span_trim`)."""
    duration = effective_duration(clip)
    if clip.info.indexed:
        # No seek at all from the start: a damaged index (a Matroska file without its cues)
        # makes even a seek to 0 fail, and FFmpeg then reads nothing yet exits 0.
        seek = ["-ss", as_seconds(clip.trim_start)] if clip.trim_start > 0 else []
        return [*seek, "-t", as_seconds(duration)]
    return ["-t", as_seconds(clip.trim_start + duration)]


def open_span(clip: Clip) -> list[str]:
    """The input options that open the clip and cut its span."""
    return clip_input(clip.path, *_seek(clip), max_pixels=max_pixels(clip))


def span_trim(clip: Clip) -> str:
    """The span as `trim`/`atrim` options, for a container without a seek index (MPEG-TS,
    MPEG-PS, FLV, GIF: an input seek can land past the last keyframe and the decoder then
    drops every frame): the filters cut it after decoding. Empty for an indexed one."""
    if clip.info.indexed:
        return ""
    start, duration = as_seconds(clip.trim_start), as_seconds(effective_duration(clip))
    return f"start={start}:duration={duration}"
