"""A poster frame for a finished video: one JPEG picture the app shows before playback.

`poster_time` chooses where to take it (1 s in, or 10 % in for long videos, never past
the middle): AI-generated clips often fade in from black, so the first frame is a poor
poster. `poster_argv` is the FFmpeg command as a value (input restricted to local files
and video container demuxers, like every builder in `commands.py`); `make_poster` runs it.
"""

from __future__ import annotations

from pathlib import Path

from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg
from export_pipeline.media.inputs import (
    CLIP_FORMATS,
    as_seconds,
    decode_limits,
    file_url,
    open_input,
)
from export_pipeline.media.runner import FFmpegError

POSTER_WIDTH = 1280  # poster for the player: at most this wide, never upscaled
THUMBNAIL_WIDTH = 320  # small preview embedded in Dagster metadata
POSTER_TIMEOUT_S = 120.0
JPEG_QUALITY = 3  # FFmpeg's mjpeg qscale: 2 (best) .. 31; 3 is visually clean and small

_FLAGS = ["-y", "-nostdin", "-hide_banner", "-loglevel", "error"]


def poster_time(duration_s: float | None) -> float:
    """Seconds into the video where the poster is taken.

    1 s in, or 10 % in when that is later (a 60 s video: 6 s), but never past the middle,
    so short videos still get a frame from their picture. Unknown or empty duration: 0.
    """
    if not duration_s or duration_s <= 0:
        return 0.0
    return round(min(max(1.0, duration_s * 0.1), duration_s / 2), 3)


def poster_argv(
    video: Path,
    out_jpg: Path,
    at_s: float,
    width: int = POSTER_WIDTH,
    quality: int = JPEG_QUALITY,
    thumbnail: tuple[Path, int] | None = None,
) -> list[str]:
    """One FFmpeg run: the frame at `at_s` of `video`, at most `width` pixels wide (keeping
    the aspect ratio; square-pixel videos, as `encoded_video` makes), as a JPEG file; with
    `thumbnail` (path, width) also a smaller copy of the same frame, from the same decode."""
    if at_s < 0:
        raise ValueError(f"at_s must be >= 0, got {at_s}")
    outputs = [(out_jpg, width), *([thumbnail] if thumbnail else [])]
    if min(w for _, w in outputs) < 16:
        raise ValueError(f"width must be at least 16 pixels, got {min(w for _, w in outputs)}")
    if not 2 <= quality <= 31:
        raise ValueError(f"quality must be 2..31, got {quality}")
    # Input seeking (-ss before -i) decodes from the keyframe before at_s and drops frames
    # up to it: exact and fast. Height -2 keeps the aspect ratio with an even height.
    labels = [f"p{n}" for n in range(len(outputs))]
    split = f"split={len(outputs)}" + "".join(f"[s{n}]" for n in range(len(outputs)))
    scales = [
        f"[s{n}]scale=w='min(iw,{w})':h=-2:flags=lanczos[{label}]"
        for n, ((_, w), label) in enumerate(zip(outputs, labels, strict=True))
    ]
    argv = [
        "ffmpeg",
        *_FLAGS,
        *open_input(video, CLIP_FORMATS, *decode_limits(), "-ss", as_seconds(at_s)),
        "-filter_complex",
        ";".join([f"[0:v:0]{split}", *scales]),
    ]
    for (path, _), label in zip(outputs, labels, strict=True):
        argv += [
            "-map",
            f"[{label}]",
            "-frames:v",
            "1",
            "-c:v",
            "mjpeg",
            "-q:v",
            str(quality),
            "-map_metadata",
            "-1",
            "-f",
            "image2",
            "-update",
            "1",
            file_url(path),
        ]
    return argv


def make_poster(
    video: Path,
    out_jpg: Path,
    at_s: float,
    width: int = POSTER_WIDTH,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    thumbnail: tuple[Path, int] | None = None,
) -> Path:
    """Write the JPEG poster of `video` taken at `at_s` (see `poster_time`) to `out_jpg`, and
    the `thumbnail` (path, width) of the same frame if asked for.

    Raises FFmpegError when FFmpeg fails or writes no picture (`at_s` beyond the end).
    """
    argv = poster_argv(video, out_jpg, at_s, width=width, thumbnail=thumbnail)
    pictures = [out_jpg, *([thumbnail[0]] if thumbnail else [])]
    for picture in pictures:
        picture.unlink(missing_ok=True)
    ffmpeg.run(argv, timeout_s=POSTER_TIMEOUT_S)
    if not all(p.is_file() and p.stat().st_size > 0 for p in pictures):
        raise FFmpegError(argv, 0, "", f"wrote no picture (is {at_s:g} s beyond the end?)")
    return out_jpg
