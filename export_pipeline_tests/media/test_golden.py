"""Segment cache keys and FFmpeg command lines of representative plans, recorded.

Cached segments live in storage under their names (`Segment.video_name`, `audio_name`),
made of `EncodeSettings.cache_key()` and `audio_key()`: a refactoring that changed one byte
of them would make every existing cache miss. The same for argv: a command that changes
its output must say so (`SEGMENT_FORMAT_VERSION`). `golden/keys.json` and
`golden/argv.json` hold what the code produced when they were recorded; a deliberate change
rewrites them (`python -m export_pipeline_tests.media.test_golden --write`) and shows in
the diff.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.captions import parse_captions, parse_style
from export_pipeline.domain.formats import FORMATS
from export_pipeline.domain.soundtrack import Soundtrack
from export_pipeline.media.audio import audio_track_argv
from export_pipeline.media.captions import BurnIn
from export_pipeline.media.clip import Clip, Transition
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.join import concat_argv
from export_pipeline.media.loudness import Level, loudness_argv
from export_pipeline.media.plan import RenderOptions, plan_render
from export_pipeline.media.poster import poster_argv
from export_pipeline.media.probe import MediaInfo, decode_check_argv, packets_argv, probe_argv
from export_pipeline.media.segment import copy_segment_argv, segment_argv, segment_audio_argv
from export_pipeline.media.soundtrack import Music, mix_filter, mix_inputs

GOLDEN = Path(__file__).with_name("golden")
SCRATCH = "<scratch>"
CAPTIONS = "1\n00:00:00,500 --> 00:00:03,000\nHello <i>there</i>!\n\n2\n00:00:06,000 --> 00:00:09,500\nBye\n"


def info(seconds: float, *, width=1920, height=1080, fps=Fraction(24), audio=True, **more):
    return MediaInfo(
        "mov,mp4,m4a,3gp,3g2,mj2", seconds, 1_000_000, "h264", width, height, fps, Fraction(1),
        audio, "aac" if audio else None, 2 if audio else None, 48000 if audio else None, **more,
    )  # fmt: skip


def clips() -> list[Clip]:
    """Five clips: trimmed, portrait, silent, a long one (chunked), an interlaced MPEG-TS."""
    return [
        Clip(Path("/clips/a.mp4"), 0.5, 3.0, info(5.0), "clip 1 (scene 1)", "a" * 64),
        Clip(Path("/clips/b.mp4"), 0.0, None, info(4.0, width=720, height=1280,
                    fps=Fraction(30)), "clip 2 (scene 2)", "b" * 64),  # fmt: skip
        Clip(Path("/clips/c.mp4"), 0.0, 9.0, info(2.5, audio=False), "clip 3 (scene 3)",
                    "c" * 64),  # fmt: skip
        Clip(Path("/clips/d.mp4"), 1.0, None, info(25.0), "clip 4 (scene 4)", "d" * 64),
        Clip(Path("/clips/e.ts"), 0.0, None, replace(info(3.0, width=720, height=576,
                    interlaced=True), format_name="mpegts"), "clip 5 (scene 5)", "e" * 64),
    ]  # fmt: skip


def with_transitions(inputs: list[Clip]) -> list[Clip]:
    kinds = [None, Transition("crossfade", 0.5), None, Transition("fade", 1.0), None]
    return [replace(inp, transition=kind) for inp, kind in zip(inputs, kinds, strict=True)]


def copyable() -> list[Clip]:
    ready = info(5.0, fps=Fraction(30), video_bitrate=1_000_000, pix_fmt="yuv420p",
                 extradata_hash="CRC32:1")  # fmt: skip
    return [
        Clip(Path(f"/clips/{n}.mp4"), 0.0, None, ready, f"clip {n}", str(n) * 64) for n in (1, 2)
    ]


def burn_in() -> BurnIn:
    return BurnIn(tuple(parse_captions(CAPTIONS, "srt")), parse_style({"position": "top"}))


def music() -> Music:
    return Music(Path("/clips/song.mp3"), Soundtrack(volume=0.3, fade_in=1.0, fade_out=2.0), 40.0)


PLANS = {
    # name: (inputs, format, loudness, captions, max_segment_s)
    "cuts": (clips, "mp4", None, False, None),
    "cuts-loudness": (clips, "mp4", -14.0, False, None),
    "transitions-loudness": (lambda: with_transitions(clips()), "mp4", -14.0, False, None),
    "chunks": (clips, "mp4", None, False, 4.0),
    "chunks-transitions": (lambda: with_transitions(clips()), "mp4", -14.0, False, 4.0),
    "captions": (lambda: with_transitions(clips()), "mp4", -14.0, True, 4.0),
    "hevc": (lambda: with_transitions(clips()), "mp4-hevc", -14.0, True, 4.0),
    "webm": (lambda: with_transitions(clips()), "webm", -14.0, True, 4.0),
    "copy": (copyable, "mp4", None, False, None),
}


def _plan(name: str, scratch: Path, attempt: int = 0):
    make, fmt, loudness, captions, chunk = PLANS[name]
    settings = encode_settings(
        "1080p", "16:9", "high", Fraction(30), attempt=attempt, threads=4, format=fmt,
        loudness=loudness,
    )  # fmt: skip
    options = RenderOptions(
        captions=burn_in() if captions else None, music=music(), max_segment_s=chunk
    )
    return plan_render(make(), settings, scratch, options)


def keys() -> dict:
    """Every plan's segment names, and the settings' keys of each format and attempt."""
    snapshot: dict = {"settings": {}, "plans": {}}
    for fmt in FORMATS:
        for attempt in (0, 1, 2):
            for loudness in (None, -14.0):
                settings = encode_settings(
                    "1080p", "16:9", "high", Fraction(30000, 1001), attempt=attempt,
                    format=fmt, loudness=loudness,
                )  # fmt: skip
                snapshot["settings"][f"{fmt}/{attempt}/{loudness}"] = [
                    settings.cache_key(),
                    settings.audio_key(),
                ]
    with tempfile.TemporaryDirectory() as scratch:
        for name in PLANS:
            plan = _plan(name, Path(scratch))
            snapshot["plans"][name] = [
                [s.video_name, s.audio_name, s.frames, round(s.offset_s, 6)] for s in plan.segments
            ]
    return snapshot


def _scrub(argv: list[str], scratch: Path) -> list[str]:
    return [arg.replace(str(scratch), SCRATCH) for arg in argv]


def argv() -> dict:
    """The commands of one plan with everything in it, per format."""
    snapshot: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        for fmt in ("captions", "hevc", "webm"):
            plan = _plan(fmt, scratch)
            settings = plan.settings
            commands: dict[str, list[str]] = {}
            for s in plan.segments:
                commands[f"segment {s.index}"] = segment_argv(s, settings)
                level = Level(-3.25, s.index % 2 == 1)
                commands[f"sound {s.index}"] = segment_audio_argv(
                    s, settings, level, Level(1.5, True)
                )
            commands["loudness"] = loudness_argv(plan.clips[0])
            commands["loudness corrected"] = loudness_argv(plan.clips[0], Level(2.0, True))
            mix = (mix_inputs(plan.music.path, True), mix_filter("0:a:0", "1:a:0", 480_000,
                   48000, plan.music.track, plan.music.duration_s))  # fmt: skip
            listing = scratch / "audio.ffconcat"
            commands["audio track"] = audio_track_argv(listing, plan.audio.path, settings)
            commands["audio track music"] = audio_track_argv(
                listing, plan.audio.path, settings, music=mix
            )
            video_list, output = scratch / "video.ffconcat", scratch / "out"
            commands["join"] = concat_argv(video_list, plan.audio.path, output, settings)
            commands["join subtitles"] = concat_argv(
                video_list, plan.audio.path, output, settings, subtitles=scratch / "c.srt"
            )
            snapshot[fmt] = {name: _scrub(cmd, scratch) for name, cmd in commands.items()}
        plan = _plan("copy", scratch)
        copy = copy_segment_argv(plan.segments[0], plan.settings)
        clip = Path("/clips/a.mp4")
        snapshot["other"] = {
            "copy": _scrub(copy, scratch),
            "probe": probe_argv(clip),
            "decode check": decode_check_argv(clip),
            "packets": packets_argv(clip),
            "poster": poster_argv(
                clip, Path("/out/p.jpg"), 1.0, thumbnail=(Path("/out/t.jpg"), 320)
            ),  # fmt: skip
        }
    return snapshot


def _golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_segment_cache_keys_are_unchanged():
    assert keys() == _golden("keys")


def test_ffmpeg_command_lines_are_unchanged():
    current, recorded = argv(), _golden("argv")
    for group in recorded:
        for name in recorded[group]:
            assert current[group][name] == recorded[group][name], (group, name)
    assert current.keys() == recorded.keys()


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m export_pipeline_tests.media.test_golden --write")
    GOLDEN.mkdir(exist_ok=True)
    for name, make in (("keys", keys), ("argv", argv)):
        text = json.dumps(make(), indent=1, sort_keys=True) + "\n"
        (GOLDEN / f"{name}.json").write_text(text)
