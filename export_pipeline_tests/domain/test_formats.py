"""A new output format is one profile and a registration line (`domain.formats`).

Two checks: outside `domain/formats/`, no code of the package names a format, codec,
encoder or muxer option (only the profiles do, so nothing else needs an edit for a new
one); and a profile registered here, H.264 + AAC in Matroska, goes through request
validation, encoder settings, planning, every FFmpeg command and a real render without any
other change."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.domain.captions import KINDS as CAPTION_KINDS
from export_pipeline.domain.captions import parse_captions
from export_pipeline.domain.formats import (
    FORMATS,
    AudioEncoder,
    Container,
    OutputFormat,
    SoftSubtitles,
    mp4,
    output_format,
    register,
)
from export_pipeline.domain.request import parse_request
from export_pipeline.media.audio import audio_track_argv
from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.join import concat_argv
from export_pipeline.media.plan import RenderOptions, plan_render
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline.media.samples import make_sample_clip
from export_pipeline.media.segment import segment_argv
from export_pipeline_tests import REPO_ROOT

PACKAGE = REPO_ROOT / "export_pipeline"
PROFILES = PACKAGE / "domain" / "formats"

# Words that name an output format's codecs or containers even if no profile uses them yet.
ALWAYS = {"h264", "hevc", "vp9", "av1", "aac", "opus", "mp4", "webm", "mkv", "matroska", "m4a"}
ALWAYS |= {"libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "libopus"}
ALWAYS |= {"mov_text", "webvtt", "hvc1", "avc1", "faststart", "movflags", "cues_to_front"}
# Inputs are not output formats: the containers clips and music may come in (and what is
# said about them), the archived clips' keys, the sample clips the demo and the tests
# generate; nor are caption documents (a WebVTT file starts with "WEBVTT").
INPUT_CONSTANTS = {"CLIP_FORMATS", "CLIP_FORMAT_NAMES", "MUSIC_FORMATS", "INDEXED_FORMATS"}
INPUT_CONSTANTS |= {"_NO_INDEX"}  # a clip cut before its MP4 index
INPUT_MODULES = {
    "defs/export/clips.py",  # archives every clip as clips/sha256/<hex>.mp4
    "domain/layout.py",  # the storage layout: those archive keys
    "io/mail/content.py",  # a sample video URL the email templates are checked with
    "defs/export/extras.py",  # names the containers a soundtrack may come in
    "media/samples.py",  # H.264/AAC sample clips
    "cli/demo.py",  # the demo's sample clips
    "domain/captions.py",  # reads SRT and WebVTT documents
    "media/captions.py",  # writes them
}


class Params:
    """Encoder parameters for looking at a profile's argv."""

    width, crf, preset, maxrate, bufsize, vbv_init, profile, threads = (
        1920,
        23,
        "x",
        1,
        1,
        0.9,
        "p",
        2,
    )


def _tokens(text: str) -> set[str]:
    words = {w.lower() for w in re.findall(r"[A-Za-z0-9_+\-]+", text)}
    return words | {w.strip("-+") for w in words}


def vocabulary() -> set[str]:
    """Every word a registered profile holds that names its codecs and containers."""
    words = set(ALWAYS)
    for profile in FORMATS.values():
        for file in (profile.file, profile.segments, profile.audio.track):
            words |= {file.muxer, file.extension, file.content_type.split("/")[-1]}
            words |= set(file.demuxers.split(","))
        words |= {profile.name, profile.video.codec, profile.audio.codec, profile.audio.encoder}
        words |= {profile.subtitles.codec, profile.subtitles.demuxer}
        words |= set(re.findall(r"[A-Za-z0-9_+\-]+", " ".join(profile.muxer_args)))
        args = profile.video.args(Params())
        words.add(args[args.index("-c:v") + 1])
        words |= {arg for arg in args if arg.startswith("-") and re.search(r"\d", arg)}
    # Caption kinds (srt, vtt) are what a request's captions come as too; numbers are numbers.
    return {w for w in words - set(CAPTION_KINDS) if len(w) > 2 and not w.isdigit()}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    found = set()
    for node in nodes:
        body = getattr(node, "body", [])
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


def _input_constants(tree: ast.AST) -> set[int]:
    """The string constants inside assignments to INPUT_CONSTANTS."""
    found = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id in INPUT_CONSTANTS for t in targets):
            found |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Constant)}
    return found


def format_words(name: str, source: str) -> list[str]:
    """Where the code of module `name` names a format, codec or encoder."""
    words = vocabulary()
    tree = ast.parse(source)
    skip = _docstrings(tree) | _input_constants(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            hits = _tokens(node.value) & words
            if hits and id(node) not in skip:
                found.append(f"{name}:{node.lineno}: {node.value!r} names {sorted(hits)}")
    return found


def test_only_the_profiles_name_formats_codecs_and_encoders():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if not path.is_relative_to(PROFILES) and name not in INPUT_MODULES:
            found += format_words(name, path.read_text())
    assert found == []


def test_the_rule_sees_a_branch_on_a_format():
    """The check is not blind: branches like the ones the profiles replaced are found."""
    source = (
        'def container(codec):\n    return "webm" if codec == "vp9" else "mp4"\n\n\n'
        'def join(argv, tag):\n    return [*argv, "-movflags", "+faststart", f"x.{tag}.m4a"]\n'
    )
    found = format_words("media/branch.py", source)
    where = sorted(line.split(": ", 1)[0] for line in found)
    assert where == ["media/branch.py:2"] * 3 + ["media/branch.py:6"] * 3


# --- a profile registered here -------------------------------------------------------------

MATROSKA = Container(
    muxer="matroska", extension="mkv", demuxers="matroska,webm", content_type="video/x-matroska"
)
MKV = OutputFormat(
    name="mkv-h264",
    file=MATROSKA,
    muxer_args=(),
    segments=MATROSKA,
    video=mp4.PROFILE.video,
    audio=AudioEncoder(
        codec="aac",
        encoder="aac",
        bitrate=160_000,
        track=Container(
            muxer="matroska",
            extension="mka",
            demuxers="matroska,webm",
            content_type="audio/x-matroska",
        ),
    ),
    subtitles=SoftSubtitles(document="srt", demuxer="srt", extension="srt", codec="srt"),
)


@pytest.fixture
def mkv():
    register(MKV)
    try:
        yield MKV
    finally:
        del FORMATS[MKV.name]


def row(fmt: str) -> dict:
    clips = [{"url": "https://cdn.example/a.mp4", "scene_number": 1}]
    return {"id": 7, "project_id": "p", "user_id": "u", "resolution": "720p", "quality": "low",
            "aspect_ratio": "16:9",
            "format": fmt, "clips": json.dumps(clips)}  # fmt: skip


def test_an_unregistered_format_is_refused():
    with pytest.raises(Exception, match="format 'mkv-h264' is not supported"):
        parse_request(row("mkv-h264"))


def test_a_registered_profile_needs_no_other_change(mkv, tmp_path):
    assert parse_request(row("mkv-h264")).format == "mkv-h264"
    assert output_format("mkv-h264") is mkv
    with pytest.raises(ValueError, match="already registered"):
        register(MKV)

    settings = encode_settings("720p", "16:9", "low", Fraction(25), "ultrafast", format="mkv-h264")
    assert (settings.codec, settings.audio_codec, settings.audio_bitrate) == (
        "h264",
        "aac",
        160_000,
    )
    clip = make_sample_clip(
        tmp_path / "a.mp4", width=320, height=240, fps=Fraction(25), duration=1.0
    )
    inputs = [Clip(clip, 0.0, None, probe(clip), "clip 1", "a" * 64)]
    plan = plan_render(inputs, settings, tmp_path)
    segment = plan.segments[0]
    assert segment.video.name == "segment-0000.mkv" and plan.audio.path.name == "audio.mka"
    assert segment.video_name.endswith(".mkv")

    argv = segment_argv(segment, settings)
    assert argv[argv.index("-c:v") + 1] == "libx264" and argv[-3:-1] == ["-f", "matroska"]
    track = audio_track_argv(tmp_path / "a.ffconcat", plan.audio.path, settings)
    assert track[-3:-1] == ["-f", "matroska"] and "160000" in track
    join = concat_argv(tmp_path / "v.ffconcat", plan.audio.path, tmp_path / "o.mkv", settings,
                       subtitles=tmp_path / "c.srt")  # fmt: skip
    assert "concat,matroska,webm" in join and join[join.index("-c:s") + 1] == "srt"
    assert join[-3:-1] == ["-f", "matroska"]

    output = tmp_path / "export.mkv"
    cues = tuple(parse_captions("1\n00:00:00,000 --> 00:00:00,500\nhi\n", "srt"))
    options = RenderOptions(subtitles=cues)
    result = render_video(inputs, settings, tmp_path / "work", output, options)
    described = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(output)],
        check=True, capture_output=True, text=True,
    ).stdout)  # fmt: skip
    assert described["format"]["format_name"] == "matroska,webm"
    codecs = [s["codec_name"] for s in described["streams"]]
    assert codecs == ["h264", "aac", "subrip"] and result.frames == 25
    assert Path(output).stat().st_size == result.size_bytes
