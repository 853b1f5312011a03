"""What a downloaded clip is, and whether it is a video we can use.

`probe` asks FFprobe (restricted to local files and video container demuxers) and turns every
way a "clip" can be wrong into an `InvalidMedia` with a message a creator can act on.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg
from export_pipeline.media.inputs import (
    CLIP_FORMAT_NAMES,
    CLIP_FORMATS,
    COMMON_FLAGS,
    MAX_INPUT_PIXELS,
    as_seconds,
    clip_input,
    decode_limits,
    file_url,
)
from export_pipeline.media.runner import DEFAULT_LIMITS, Captured, FFmpegError, Limits

PROBE_TIMEOUT_S = 60.0
DECODE_TIMEOUT_S = 120.0
_SNIFF_BYTES = 512
_DEMUXER_REJECTED = re.compile(r"\[([\w,]+) @ [^\]]*\] Format not on whitelist")
_LOG_CONTEXT = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")  # "[h264 @ 0x55d0...] "
_TOO_LARGE = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")
# Demuxers whose files carry an index that seeks exactly to a keyframe.
# Bump when `probe` would describe the same file differently: kept records are then ignored.
PROBE_VERSION = 2  # 2: the colour tags (a kept HDR clip must not pass for SDR)
INDEXED_FORMATS = {"mov", "mp4", "matroska", "webm", "avi"}
# Frame rates a clip may declare; outside them the rate is unknown (the export picks one).
MIN_FPS = Fraction(1)
MAX_FPS = Fraction(1000)
# Field orders of interlaced video in ffprobe's words ("progressive" and "unknown" are not).
_INTERLACED = {"tt", "bb", "tb", "bt"}
# The colour tags of the video stream (`-show_streams` has them), MediaInfo's field names.
_COLOUR_TAGS = ("color_transfer", "color_primaries", "color_space", "color_range")
# How far the packets really present may fall short of the declared duration: a frame or
# two of rounding, a container's slack, never a missing second. Measured: intact MP4, MOV,
# Matroska, AVI, FLV, MPEG-TS and GIF files, VFR ones and ones whose audio outlasts the video
# miss by at most one frame; a file cut in transfer misses seconds.
INCOMPLETE_TOLERANCE_S = 0.5
INCOMPLETE_TOLERANCE_SHARE = 0.05
# Streams whose packets count as content (not timecode, data or subtitle tracks).
_CONTENT_STREAMS = {"video", "audio"}
_NO_INDEX = (
    "is incomplete (its index, the MP4 moov box, is missing: the file was cut short or never "
    "finished); upload it again"
)


class InvalidMedia(ExportFailure):
    """A file that is not a usable video (cause `invalid_clip_file`, permanent). `reason`
    is a predicate such as "is empty (0 bytes)"; str() is "<file name> <reason>", and
    callers can prefix `reason` with their own label (`of_clip`)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path.name} {reason}", cause=FailureCause.INVALID_CLIP_FILE, permanent=True
        )

    def of_clip(self, label: str) -> ExportFailure:
        """The failure as the request names the clip: `clip 3 (scene 7): the file is empty`."""
        return ExportFailure(
            f"{label}: the file {self.reason}", cause=self.cause, permanent=self.permanent
        )


@dataclass(frozen=True)
class MediaInfo:
    """A probed clip. `width`/`height` are the displayed size (rotation applied), `duration`
    is the video stream's duration in seconds (the container's when the stream has none, as
    in Matroska), `sar` the sample aspect ratio (1 when unknown)."""

    format_name: str
    duration: float
    size_bytes: int
    video_codec: str
    width: int
    height: int
    fps: Fraction
    sar: Fraction
    has_audio: bool
    audio_codec: str | None
    audio_channels: int | None
    audio_rate: int | None
    # What decides whether the video stream can be copied into an export unchanged.
    pix_fmt: str | None = None
    video_bitrate: int | None = None
    extradata_hash: str | None = None
    interlaced: bool = False
    # The video stream's colour tags in ffprobe's words (None: not tagged); see media.colour.
    color_transfer: str | None = None
    color_primaries: str | None = None
    color_space: str | None = None
    color_range: str | None = None

    @property
    def indexed(self) -> bool:
        """Whether the container has a seek index (see `clip.span_trim`)."""
        return bool(set(self.format_name.split(",")) & INDEXED_FORMATS)

    def to_record(self) -> dict[str, Any]:
        """Everything, JSON-friendly and exact (rates as fractions), stamped with
        PROBE_VERSION: kept in the clip manifest so the encode step need not probe again."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**record, "fps": str(self.fps), "sar": str(self.sar), "version": PROBE_VERSION}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> MediaInfo | None:
        """The MediaInfo kept by `to_record`, or None when there is none or it was made by
        another version of `probe` (which could read the same file differently)."""
        if not record or record.get("version") != PROBE_VERSION:
            return None
        values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
        try:
            return cls(**{**values, "fps": Fraction(values["fps"]), "sar": Fraction(values["sar"])})
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None

    def as_metadata(self) -> dict[str, str | int | float | bool]:
        """A JSON-friendly summary for asset metadata."""
        return {
            "codec": self.video_codec,
            "width": self.width,
            "height": self.height,
            "fps": round(float(self.fps), 3),
            "duration": round(self.duration, 3),
            "audio": self.has_audio,
            "bytes": self.size_bytes,
        }


def _ffprobe_clip(max_pixels: int) -> list[str]:
    """FFprobe opening a clip as FFmpeg does: local file, our containers, bounded decoders
    (ffprobe opens the decoders too)."""
    return [
        "ffprobe",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        CLIP_FORMATS,
        *decode_limits(max_pixels),
    ]


def probe_argv(path: Path, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """FFprobe's JSON description of a clip's container and streams."""
    return [
        *_ffprobe_clip(max_pixels),
        "-show_format",
        "-show_streams",
        "-show_data_hash",
        "CRC32",  # extradata_hash: equal H.264 headers allow joining clips by stream copy
        "-of",
        "json",
        file_url(path),
    ]


def decode_check_argv(
    path: Path, seconds: float = 0.2, max_pixels: int = MAX_INPUT_PIXELS
) -> list[str]:
    """Decode the first `seconds` of video (and audio, if any); `-xerror` stops at an error.
    The first few frames prove the streams decode: a whole second of 1080p cost 0.5-1 s of
    CPU per clip, a tenth of a minute-long export's overhead (bench_corpus)."""
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        "-xerror",
        *clip_input(path, "-t", as_seconds(seconds), max_pixels=max_pixels),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-f",
        "null",
        "-",
    ]


def packets_argv(path: Path, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """Every packet of every stream (stream type, time and duration, one CSV line each:
    "video,1.000000,0.960000,0.040000"), read by demuxing only: how much of the clip is
    really in the file, whatever its header declares."""
    return [
        *_ffprobe_clip(max_pixels),
        "-show_entries",
        "packet=codec_type,pts_time,dts_time,duration_time",
        "-of",
        "csv=p=0",
        file_url(path),
    ]


def _sniff(head: bytes) -> str | None:
    """A reason for files that are obviously not videos, from their first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"#extm3u"):
        return "is an HLS playlist (.m3u8), not a video file"
    if text.startswith(b"ffconcat"):
        return "is an ffconcat playlist, not a video file"
    if text.startswith(b"<?xml"):
        return "is not a video file (looks like XML)"
    if text.startswith(b"<"):
        return "is not a video file (looks like HTML)"
    if text.startswith((b"{", b"[")):
        return "is not a video file (looks like JSON)"
    return None


def _ffmpeg_reason(stderr: str, path: Path) -> str:
    """FFmpeg's error lines as one phrase: the first (usually the cause) and the last
    (usually the summary), without log contexts and file names."""
    lines: list[str] = []
    for raw in stderr.splitlines():
        line = _LOG_CONTEXT.sub("", raw.strip())
        for prefix in (f"file:{path}: ", f"{path}: "):
            line = line.removeprefix(prefix)
        if line:
            lines.append(line)
    if not lines:
        return "unknown error"
    first, last = lines[0], lines[-1]
    return last if first == last else f"{first} ({last})"


def _rational(value: object) -> Fraction:
    """A ratio such as 30000/1001 or 16:15 as a Fraction; 0 when missing, malformed, not
    positive or absurd (more than 40 digits: a mangled header, not a rate)."""
    if not isinstance(value, str) or len(value) > 40:
        return Fraction(0)
    num, sep, den = value.replace(":", "/").partition("/")
    try:
        ratio = Fraction(num) if not sep else Fraction(int(num), int(den)) if int(den) else 0
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return Fraction(ratio) if ratio > 0 else Fraction(0)


def _number(value: object) -> float | None:
    """FFprobe's numbers come as strings ("2.000000"), sometimes "N/A"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None  # "nan", "inf", "1e400" mean nothing


def _frame_rate(stream: dict[str, Any]) -> Fraction:
    """The nominal rate when it agrees with the average (it is the cleaner rational); 0
    (unknown) outside MIN_FPS..MAX_FPS: a time scale of 0 in a damaged MP4 once claimed
    1/512 fps, which would have made one second of clip a 512 s segment."""
    nominal = _sane_rate(_rational(stream.get("r_frame_rate")))
    average = _sane_rate(_rational(stream.get("avg_frame_rate")))
    if average <= 0:
        return nominal
    if nominal > 0 and abs(nominal - average) <= average / 100:
        return nominal
    return average


def _sane_rate(rate: Fraction) -> Fraction:
    return rate if MIN_FPS <= rate <= MAX_FPS else Fraction(0)


def _rotation(stream: dict[str, Any]) -> int:
    for side_data in stream.get("side_data_list") or []:
        if "rotation" in side_data:
            return int(_number(side_data["rotation"]) or 0)
    return int(_number((stream.get("tags") or {}).get("rotate")) or 0)


def parse_probe(path: Path, data: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> MediaInfo:
    """MediaInfo from FFprobe's `-show_format -show_streams` JSON; InvalidMedia for anything
    else, whatever the JSON holds (values of the wrong type included)."""
    try:
        return _parse_probe(path, data, limits)
    except InvalidMedia:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise InvalidMedia(
            path, f"could not be decoded: its description is malformed ({type(exc).__name__})"
        ) from exc


def _parse_probe(path: Path, data: dict[str, Any], limits: Limits) -> MediaInfo:
    streams: list[dict[str, Any]] = data.get("streams") or []
    fmt: dict[str, Any] = data.get("format") or {}
    # Cover art in audio files shows up as a one-picture video stream.
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        raise InvalidMedia(path, "has no video stream" + (" (audio only)" if audios else ""))
    video = videos[0]
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise InvalidMedia(path, "could not be decoded: the video stream has no frame size")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise InvalidMedia(path, _too_large(width, height, limits))
    sar = _rational(video.get("sample_aspect_ratio"))
    sar = sar if sar > 0 else Fraction(1)
    if _rotation(video) % 180 != 0:
        # FFmpeg rotates the frames when decoding; describe what it will hand us.
        width, height, sar = height, width, 1 / sar
    duration = _number(video.get("duration")) or _number(fmt.get("duration"))
    if duration is None or duration <= 0:
        raise InvalidMedia(path, "has no duration (is it a still image or an empty video?)")
    audio = audios[0] if audios else None
    return MediaInfo(
        format_name=str(fmt.get("format_name", "")),
        duration=duration,
        size_bytes=int(_number(fmt.get("size")) or 0),
        video_codec=str(video.get("codec_name", "unknown")),
        width=width,
        height=height,
        fps=_frame_rate(video),
        sar=sar,
        has_audio=audio is not None,
        audio_codec=str(audio.get("codec_name", "unknown")) if audio else None,
        audio_channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        audio_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        pix_fmt=video.get("pix_fmt"),
        video_bitrate=int(_number(video.get("bit_rate")) or 0) or None,
        extradata_hash=video.get("extradata_hash"),
        interlaced=video.get("field_order") in _INTERLACED,
        **{name: _tag(video.get(name)) for name in _COLOUR_TAGS},
    )


def _tag(value: object) -> str | None:
    """A colour tag; None for a missing or unspecified one (ffprobe says "unknown")."""
    return value if isinstance(value, str) and value not in ("", "unknown", "unspecified") else None


def _too_large(width: int, height: int, limits: Limits) -> str:
    return (
        f"is {width}x{height}; the largest frame accepted is {limits.max_side} pixels a side "
        f"and {limits.max_pixels / 1e6:.1f} megapixels: export the clip at a lower resolution"
    )


def _too_costly(program: str, over: str) -> str:
    """A limit hit while reading the file: say so, not that the file is broken."""
    return f"is too costly to process: {program} {over}"


def probe(path: Path, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> MediaInfo:
    """Describe a local clip; raise InvalidMedia when it is not a usable video."""
    limits = ffmpeg.limits
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise InvalidMedia(path, "does not exist") from None
    except IsADirectoryError:
        raise InvalidMedia(path, "is a directory, not a file") from None
    if size == 0:
        raise InvalidMedia(path, "is empty (0 bytes)")
    reason = _sniff(head)
    if reason:
        raise InvalidMedia(path, reason)
    result = _run_probe(path, probe_argv(path, limits.max_pixels), ffmpeg)
    stderr = result.stderr
    too_large = _TOO_LARGE.search(stderr)
    if too_large:  # the decoder refused to allocate it (-max_pixels): say what it is
        raise InvalidMedia(path, _too_large(int(too_large[1]), int(too_large[2]), limits))
    if result.returncode != 0:
        if result.over_limit:
            raise InvalidMedia(path, _too_costly("ffprobe", result.over_limit))
        rejected = _DEMUXER_REJECTED.search(stderr)
        if rejected:
            raise InvalidMedia(
                path,
                f"is not a supported video file (detected format: {rejected.group(1)}; "
                f"expected {CLIP_FORMAT_NAMES})",
            )
        if "moov atom not found" in stderr:  # an MP4 cut before its index (written last)
            raise InvalidMedia(path, _NO_INDEX)
        raise InvalidMedia(path, f"could not be decoded: {_ffmpeg_reason(stderr, path)}")
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise InvalidMedia(path, "could not be decoded: ffprobe returned no description") from None
    if not _declared_duration(data):
        # A raw elementary stream (.m2v, some .mpg) declares no duration: count its packets.
        present = present_duration(path, ffmpeg)
        if present:
            data.setdefault("format", {})["duration"] = str(present)
    return parse_probe(path, data, limits)


def _declared_duration(data: dict[str, Any]) -> float | None:
    durations = [_number(s.get("duration")) for s in data.get("streams") or []]
    return next((d for d in durations if d), None) or _number(
        (data.get("format") or {}).get("duration")
    )


def _run_probe(path: Path, argv: list[str], ffmpeg: FFmpeg) -> Captured:
    """Run ffprobe under the same limits as FFmpeg (memory, CPU time, death with us)."""
    try:
        return ffmpeg.capture(argv, timeout_s=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InvalidMedia(path, f"could not be probed within {PROBE_TIMEOUT_S:g} s") from None


def check_decodable(path: Path, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> None:
    """Decode the first second of the clip; raise InvalidMedia at the first decoding error."""
    limits = ffmpeg.limits
    argv = decode_check_argv(path, max_pixels=limits.max_pixels)
    try:
        ffmpeg.run(argv, timeout_s=DECODE_TIMEOUT_S)
    except FFmpegError as error:
        too_large = _TOO_LARGE.search(error.stderr)
        if too_large:
            width, height = int(too_large[1]), int(too_large[2])
            raise InvalidMedia(path, _too_large(width, height, limits)) from error
        if error.over_limit:
            raise InvalidMedia(path, _too_costly("FFmpeg", error.reason)) from error
        detail = _ffmpeg_reason(error.stderr, path) if error.stderr.strip() else error.reason
        raise InvalidMedia(path, f"could not be decoded: {detail}") from error


def present_duration(path: Path, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> float | None:
    """Seconds of video and audio really in the file: from the first packet of either to the
    end of the last, found by demuxing (no decoding: 0.15 s and 58 MB for a minute of
    1080p, 116 MB, from the page cache). None when the packets carry no timestamps.

    Both kinds count, so a file whose audio outlasts its video is whole; timecode and data
    tracks do not (one packet can claim the whole length)."""
    result = _run_probe(path, packets_argv(path, ffmpeg.limits.max_pixels), ffmpeg)
    if result.over_limit:  # a scan cut short by a limit says nothing about the file's length
        raise InvalidMedia(path, _too_costly("ffprobe", result.over_limit))
    starts: list[float] = []
    ends: list[float] = []
    for line in result.stdout.decode("utf-8", errors="replace").splitlines():
        kind, *fields = (line.split(",") + ["", "", ""])[:4]
        pts, dts, duration = (_number(field) for field in fields)
        time = pts if pts is not None else dts
        if kind in _CONTENT_STREAMS and time is not None:
            starts.append(time)
            ends.append(time + (duration or 0.0))
    return max(ends) - min(starts) if starts else None


def check_complete(path: Path, info: MediaInfo, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> None:
    """Raise InvalidMedia when the file holds less than it declares (cut short in transfer
    or upload): rendering it would end in a frozen frame and silence. The declared length is
    `info.duration` (the video's, or the container's); what is present is `present_duration`,
    within max(INCOMPLETE_TOLERANCE_S, INCOMPLETE_TOLERANCE_SHARE of the length)."""
    present = present_duration(path, ffmpeg)
    if present is None:
        return
    tolerance = max(INCOMPLETE_TOLERANCE_S, info.duration * INCOMPLETE_TOLERANCE_SHARE)
    if present < info.duration - tolerance:
        raise InvalidMedia(
            path,
            f"is incomplete ({present:.1f} s of {info.duration:.1f} s decodable); upload it again",
        )


def probe_and_check(path: Path, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> MediaInfo:
    """`probe`, then `check_decodable` and `check_complete`: the clip is described, its first
    frames decode, and the rest of it is really in the file."""
    info = probe(path, ffmpeg)
    check_decodable(path, ffmpeg)
    check_complete(path, info, ffmpeg)
    return info
