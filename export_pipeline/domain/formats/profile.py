"""What an output format is: everything that differs between formats, as data and pure argv
fragments. `media` builds every FFmpeg command from these and names no format itself, so a
new format is one file here and a registration line (`domain.formats`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class EncoderParams(Protocol):
    """What a video encoder's argv is made from (`media.encoding.EncodeSettings` has it)."""

    width: int
    crf: int
    preset: str  # the encoder's speed setting, one of `VideoEncoder.speeds`
    maxrate: int  # bit/s
    bufsize: int  # bits
    vbv_init: float
    profile: str  # the codec profile, one of `VideoEncoder.profiles`
    threads: int  # 0: the encoder's own choice


@dataclass(frozen=True)
class Container:
    """A file FFmpeg writes and reads back: its muxer (`-f`), extension, the demuxers that
    read it (a `-format_whitelist` entry) and the content type it is stored with."""

    muxer: str
    extension: str
    demuxers: str
    content_type: str


@dataclass(frozen=True)
class VideoEncoder:
    """The video codec and its encoder. `codec` is ffprobe's name for what it makes (part of
    the segment cache keys); `crf` the constant-quality value per quality; `speeds` its
    speed settings, fastest first (a retry takes the next faster); `profiles` the codec
    profile by retry attempt (the last one for every later attempt); `args` the encoder's
    argv for one segment."""

    codec: str
    crf: Mapping[str, int] = field(hash=False)
    speeds: tuple[str, ...]
    default_speed: str
    profiles: tuple[str, ...]
    args: Callable[[EncoderParams], list[str]]
    # Whether the operator's preset (`MediaTools.x264_preset`) replaces `default_speed`.
    takes_preset: bool = False
    # Output options that tag a stream-copied clip's video SDR BT.709 without re-encoding it
    # (a bitstream filter rewriting its headers); a format that `copies_clips` needs them.
    retag_copy: tuple[str, ...] = ()
    # Speed steps slower for an output above 30 frames per second (`encode_settings`): twice
    # the frames under the same bitrate cap leave half the bits per frame, and fast pans
    # then need a better motion search to keep their quality.
    high_rate_slower: int = 0
    # Processing time per second of video at its default speed, relative to H.264 at the
    # default preset: the time left before any history (domain.eta; bench_prior measures it).
    cost: float = 1.0

    def profile(self, attempt: int) -> str:
        return self.profiles[min(attempt, len(self.profiles) - 1)]


@dataclass(frozen=True)
class AudioEncoder:
    """The audio codec (`codec`: ffprobe's name, part of the segment cache keys), its encoder
    and bitrate, and the audio track's file, encoded once and copied by the join."""

    codec: str
    encoder: str
    bitrate: int  # bit/s
    track: Container


@dataclass(frozen=True)
class SoftSubtitles:
    """A soft caption track: the caption document written for it (`document`, a kind of
    `domain.captions`: srt or vtt), the demuxer and extension of that file, and the
    subtitle codec it is muxed as."""

    document: str
    demuxer: str
    extension: str
    codec: str


@dataclass(frozen=True, repr=False)
class OutputFormat:
    """What a request's `format` makes: the published file (container, muxer options), the
    segments it is joined from, the video and audio encoders, the soft subtitle track, and
    whether a clip already in `video.codec` may be stream-copied into it (`copies_clips`)."""

    name: str
    file: Container
    muxer_args: tuple[str, ...]  # the join's options before `-f file.muxer`
    segments: Container
    video: VideoEncoder
    audio: AudioEncoder
    subtitles: SoftSubtitles
    copies_clips: bool = False

    @property
    def extension(self) -> str:
        return self.file.extension

    @property
    def content_type(self) -> str:
        return self.file.content_type

    def __repr__(self) -> str:  # short: settings records and logs print it
        return f"OutputFormat({self.name!r})"


def threads(option: str, count: int) -> list[str]:
    """An encoder's thread option; none for 0 (the encoder's own choice)."""
    return [option, str(count)] if count > 0 else []
