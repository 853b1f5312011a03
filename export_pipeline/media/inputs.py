"""How every FFmpeg and FFprobe command opens its files: `-protocol_whitelist` and a demuxer
whitelist on each input (so a "clip" that is really a playlist cannot make FFmpeg read
anything else; the concat demuxer passes both on to the files it opens), `file:` URLs,
bounded decoding, files of our storage read over HTTP, and concat lists."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# Demuxers a clip may use: MP4/MOV, Matroska/WebM, MPEG-TS, MPEG-PS (.mpg, .vob), AVI, FLV
# and animated GIF: none of them can open another file or URL (unlike hls, dash, concat or
# image2, which stay refused; mov's `dref` references are off unless asked for). A demuxer
# name such as "mov,mp4,m4a,3gp,3g2,mj2" is accepted when any of its parts is listed.
CLIP_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,mpeg,mpegvideo,avi,flv,gif"
CLIP_FORMAT_NAMES = "MP4, MOV, Matroska, WebM, MPEG-TS, MPEG-PS or MPEG video, AVI, FLV or GIF"
# Decoding a clip: few threads (each holds frames: a 16-thread decode of a huge frame took
# 12 GB; 2 keep up with the encoder even for 8K sources) and a ceiling on the frame size the
# decoder will allocate. The default ceiling is the largest 8K, 8192x4320 (DCI; UHD's
# 7680x4320 passes too): 4k and 8K footage is accepted, a 16000x16000 bomb is not.
DECODE_THREADS = 2
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 8192 * 4320

COMMON_FLAGS = ["-y", "-nostdin", "-hide_banner", "-loglevel", "error"]
PROGRESS_FLAGS = ["-progress", "pipe:1", "-nostats"]

# A remote file's input: HTTP(S) only, and FFmpeg reconnects by itself after a dropped
# connection (storage servers close idle keep-alive connections while a segment encodes).
REMOTE_PROTOCOLS = "http,https,tcp,tls"
_RECONNECT = ["-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_delay_max", "8"]
# Names the concat demuxer accepts in its default safe mode.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class RemoteFile:
    """An object of our own storage that FFmpeg reads over HTTP(S), seeking with range
    requests (a presigned URL), so a step that needs a few seconds of a long archived clip
    reads those, not the whole file. Never a URL from a request: clips are downloaded and
    checked first (`clips.download`)."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")) or "\0" in self.url:
            raise ValueError("a remote file is an http(s) URL")

    def __str__(self) -> str:  # for messages: without the signature in its query
        return self.url.split("?", 1)[0]


Source = Path | RemoteFile


def file_url(path: Path) -> str:
    """A local file as FFmpeg's `file:` URL: an explicit protocol, so a name like "x:y.mp4"
    or "-i" cannot be read as anything else."""
    if "\0" in str(path):
        raise ValueError(f"a file name cannot contain a NUL byte: {str(path)!r}")
    return f"file:{path}"


def as_rate(fps: Fraction) -> str:
    """A frame rate as FFmpeg writes it: 30 or 30000/1001."""
    fps = Fraction(fps)
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def as_seconds(value: float) -> str:
    return f"{value:.6f}"


def threads_option(option: str, count: int) -> list[str]:
    """A thread-count option; none for 0 (FFmpeg's default)."""
    return [option, str(count)] if count > 0 else []


def open_input(path: Source, formats: str, *options: str) -> list[str]:
    """Options that open one input with the given demuxer whitelist: a local file, or a
    file of our storage over HTTP(S) (`RemoteFile`)."""
    if isinstance(path, RemoteFile):
        whitelist = ["-protocol_whitelist", REMOTE_PROTOCOLS, "-format_whitelist", formats]
        return [*whitelist, *_RECONNECT, *options, "-i", path.url]
    whitelist = ["-protocol_whitelist", "file", "-format_whitelist", formats]
    return [*whitelist, *options, "-i", file_url(path)]


def decode_limits(max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """Input options that bound decoding: few threads, and no frame over `max_pixels`."""
    return ["-threads", str(DECODE_THREADS), "-max_pixels", str(max_pixels)]


def clip_input(path: Source, *options: str, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """A clip: our whitelist of containers, and bounded decoding (threads, frame size)."""
    return open_input(path, CLIP_FORMATS, *decode_limits(max_pixels), *options)


def concat_list(paths: list[Path]) -> str:
    """A concat demuxer list naming `paths` by basename; write it next to them.

    Plain relative names are what the demuxer's default safe mode accepts, so every path must
    be in one directory and its name must use only letters, digits, '.', '_' and '-' (not
    starting with '.'); anything else raises ValueError.
    """
    if not paths:
        raise ValueError("concat list needs at least one file")
    parents = {path.parent for path in paths}
    if len(parents) != 1:
        raise ValueError(f"concat list files must share one directory, got {sorted(parents)}")
    lines = ["ffconcat version 1.0"]
    for path in paths:
        if not _SAFE_NAME.fullmatch(path.name):
            raise ValueError(f"unsafe file name for a concat list: {path.name!r}")
        lines.append(f"file '{path.name}'")
    return "\n".join(lines) + "\n"


def write_concat_list(paths: list[Path], kind: str) -> Path:
    """A concat list of `paths` written next to them (the caller removes it)."""
    with tempfile.NamedTemporaryFile(
        "w", dir=paths[0].parent, prefix=f"{kind}-", suffix=".ffconcat", delete=False
    ) as handle:
        handle.write(concat_list(paths))
    return Path(handle.name)
