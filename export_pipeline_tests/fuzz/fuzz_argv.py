"""Fuzz target: the FFmpeg/FFprobe argv builders and `encode_settings` (`media`).

Builders: `segment_argv`, `segment_audio_argv`, `copy_segment_argv` (`segment`),
`audio_track_argv` (`audio`), `concat_argv` (`join`), `concat_list` (`inputs`),
`probe_argv`, `decode_check_argv`, `packets_argv` (`probe`) and `encode_settings`.

Contract: every builder returns a list of str in which no element holds a NUL byte (exec
would refuse it, or worse, cut it short) and every input is opened as a `file:` URL right
after `-protocol_whitelist file`, so no name (`-i`, `x:y.mp4`, `concat:a|b`, `http://...`)
can make FFmpeg read anything but that local file; outputs are `file:` URLs too. Or it
raises ValueError, or ClipError for a span the clip cannot give (both with a message).
`concat_list` returns lines the concat demuxer's safe mode accepts, or raises ValueError.
`encode_settings` returns settings FFmpeg can use or raises ValueError.

Input layout: the last byte picks the builder, the rest is a generated job (paths with odd
characters, trims, durations, frame sizes, aspect ratios, frame rates, encoder targets).

    python -m export_pipeline_tests.fuzz.fuzz_argv -max_total_time=600 CORPUS
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from export_pipeline_tests.fuzz.harness import Finding, fuzz_main, instrumented
from export_pipeline_tests.fuzz.values import Provider, fraction, pick, text

with instrumented(__name__):
    from export_pipeline.domain.target import ASPECT_RATIOS, QUALITIES, RESOLUTIONS
    from export_pipeline.media.audio import audio_track_argv
    from export_pipeline.media.clip import Clip, ClipError
    from export_pipeline.media.encoding import EncodeSettings, encode_settings
    from export_pipeline.media.inputs import concat_list
    from export_pipeline.media.join import concat_argv
    from export_pipeline.media.probe import (
        MediaInfo,
        decode_check_argv,
        packets_argv,
        probe_argv,
    )
    from export_pipeline.media.segment import (
        Segment,
        copy_segment_argv,
        segment_argv,
        segment_audio_argv,
    )

NAMES = ["clip.mp4", "-i", "-", "x:y.mp4", "file:a.mp4", "concat:a.mp4|b.mp4", "pipe:0"]
NAMES += ["http://127.0.0.1/a.mp4", "a b.mp4", "a'b.mp4", "a\nfile 'b.mp4'", "a\x00b.mp4"]
NAMES += ["", ".", "..", ".hidden", "~", "\udcff.mp4", "\u202e4pm.exe", "a|b", "%d.png", "x" * 300]
DIRS = ["/work/scratch", "", "/", "rel", "/a\x00b", "/tmp/dir with space", "-dir", "C:\\x"]
PRESETS = ["superfast", "ultrafast", "veryslow", "placebo", "", "SUPERFAST"]
SAFE_LINE = re.compile(r"file '[A-Za-z0-9_-][A-Za-z0-9._-]*'")
BUILDERS = ["encode_settings", "segment", "copy_segment", "concat_list", "concat", "probe"]
BUILDERS += ["decode_check", "packets"]
DEFAULT_SETTINGS = encode_settings("720p", "16:9", "low", Fraction(24))


def _path(fdp: Provider) -> Path:
    directory = pick(fdp, DIRS) if fdp.ConsumeIntInRange(0, 3) else text(fdp, 12)
    name = pick(fdp, NAMES) if fdp.ConsumeIntInRange(0, 3) else text(fdp, 16)
    return Path(directory) / name if directory else Path(name)


def _settings(fdp: Provider) -> EncodeSettings:
    """Settings from fuzzed targets (the defaults when encode_settings refuses them)."""
    try:
        return _encode_settings(fdp)
    except ValueError:
        return DEFAULT_SETTINGS


def _encode_settings(fdp: Provider) -> EncodeSettings:
    return encode_settings(
        pick(fdp, [*RESOLUTIONS, "8k", ""]) if fdp.ConsumeIntInRange(0, 7) else text(fdp, 6),
        pick(fdp, [*ASPECT_RATIOS, "16/9", ""]) if fdp.ConsumeIntInRange(0, 7) else text(fdp, 6),
        pick(fdp, [*QUALITIES, "LOW"]) if fdp.ConsumeIntInRange(0, 7) else text(fdp, 6),
        fraction(fdp),
        preset=pick(fdp, PRESETS),
        attempt=fdp.ConsumeIntInRange(-2, 5) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeInt(8),
    )


def _seconds(fdp: Provider) -> float:
    """Seconds as the callers hold them: floats (the spec and ffprobe give floats), at an
    edge (nan, inf, -0.0, subnormal, huge) or anywhere."""
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.ConsumeFloat()
    return fdp.ConsumeRegularFloat()


def _job(fdp: Provider) -> Segment:
    """A segment of one clip: a fuzzed file, span, probed length, geometry and container."""
    source, trim, duration, has_audio = _path(fdp), _seconds(fdp), _seconds(fdp), fdp.ConsumeBool()
    info = MediaInfo(
        format_name=pick(fdp, ["mov,mp4,m4a,3gp,3g2,mj2", "mpegts", "matroska,webm", ""]),
        duration=_seconds(fdp),
        size_bytes=1,
        video_codec="h264",
        width=pick(fdp, [0, 1, 2, 1920, -1, 2**31, 10**30]),
        height=pick(fdp, [0, 1, 2, 1080, -1, 2**31, 10**30]),
        fps=fraction(fdp),
        sar=fraction(fdp),
        has_audio=has_audio,
        audio_codec=None,
        audio_channels=None,
        audio_rate=None,
        interlaced=fdp.ConsumeBool(),
    )
    clip = Clip(source, trim, duration, info, "clip 1")
    return Segment(0, 0, clip, video=_path(fdp), audio=_path(fdp))


def check_argv(argv: Any, inputs: list[Path], outputs: list[Path]) -> None:
    """A command line that opens exactly `inputs` as whitelisted `file:` URLs."""
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        raise Finding(f"not a list of str: {argv!r:.200}")
    with_nul = [arg for arg in argv if "\x00" in arg]
    if with_nul:
        raise Finding(f"argv element with a NUL byte: {with_nul[0]!r:.200}")
    opened: list[str] = []
    whitelisted = False
    for index, arg in enumerate(argv):
        if arg == "-protocol_whitelist":
            whitelisted = index + 1 < len(argv) and argv[index + 1] == "file"
        elif arg == "-i":
            url = argv[index + 1] if index + 1 < len(argv) else ""
            if not whitelisted or not url.startswith("file:"):
                raise Finding(f"input {url!r:.200} is not a whitelisted file: URL")
            opened.append(url)
            whitelisted = False  # each input needs its own whitelist
    if argv and argv[0] == "ffprobe":
        # ffprobe takes its input last, without -i.
        if not whitelisted or not argv[-1].startswith("file:"):
            raise Finding(f"input {argv[-1]!r:.200} is not a whitelisted file: URL")
        opened.append(argv[-1])
    if opened != [f"file:{path}" for path in inputs]:
        raise Finding(f"opens {opened!r:.300}, expected {inputs!r:.300}")
    for path in outputs:
        if f"file:{path}" not in argv:
            raise Finding(f"output {path!r:.200} is not passed as a file: URL")


def _check_concat(text_: str, paths: list[Path]) -> None:
    lines = text_.split("\n")
    if lines[0] != "ffconcat version 1.0" or lines[-1] != "" or len(lines) != len(paths) + 2:
        raise Finding(f"concat list shaped wrong: {text_!r:.300}")
    for line, path in zip(lines[1:-1], paths, strict=True):
        if not SAFE_LINE.fullmatch(line) or line != f"file '{path.name}'":
            raise Finding(f"concat list line {line!r:.200} for {path!r:.200}")


def _check_settings(settings: EncodeSettings) -> None:
    even = (
        settings.width > 0
        and settings.height > 0
        and settings.width % 2 == settings.height % 2 == 0
    )
    if not even or settings.fps <= 0 or settings.maxrate <= 0 or settings.bufsize <= 0:
        raise Finding(f"unusable settings {settings!r:.300}")
    if len(settings.cache_key()) != 16:
        raise Finding("cache_key is not 16 characters")


def run_builder(fdp: Provider) -> None:
    builder = pick(fdp, BUILDERS)
    if builder == "encode_settings":
        _check_settings(_encode_settings(fdp))
    elif builder in ("segment", "copy_segment"):
        job, settings = _job(fdp), _settings(fdp)
        source = job.span.path
        if builder == "segment":
            argv = segment_argv(job, settings)
            check_argv(argv, [source], [job.video])
            check_argv(segment_audio_argv(job, settings), [source], [job.audio])
        else:
            check_argv(copy_segment_argv(job, settings), [source], [job.video])
    elif builder == "concat_list":
        paths = [_path(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        _check_concat(concat_list(paths), paths)
    elif builder == "concat":
        inputs, output = [_path(fdp), _path(fdp)], _path(fdp)
        settings = _settings(fdp)
        check_argv(concat_argv(*inputs, output, settings), inputs, [output])
        check_argv(audio_track_argv(inputs[0], output, settings), inputs[:1], [output])
    elif builder == "probe":
        path = _path(fdp)
        check_argv(probe_argv(path), [path], [])
    elif builder == "packets":
        path = _path(fdp)
        check_argv(packets_argv(path), [path], [])
    else:
        path = _path(fdp)
        check_argv(decode_check_argv(path, seconds=_seconds(fdp)), [path], [])


def test_one_input(data: bytes) -> None:
    try:
        run_builder(Provider(data))
    except (ValueError, ClipError) as exc:
        if not str(exc).strip():
            raise Finding(f"{type(exc).__name__} without a message") from exc


if __name__ == "__main__":
    fuzz_main(test_one_input)
