"""Transitions and burned-in captions, rendered with real FFmpeg and measured on the output:
the timeline arithmetic, a crossfade's middle frame blending both clips, a fade reaching
black, the sound carrying across, captions on screen at their cue times only, and a
re-export rendering only the segments that touch the clip that changed."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.domain.captions import parse_captions, parse_style
from export_pipeline.media.captions import BurnIn
from export_pipeline.media.clip import Clip, ClipError, Transition
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.plan import RenderOptions, plan_segments
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline_tests.media.test_render import info_for

FPS = Fraction(30)
W, H = 320, 180
COLOURS = ("red", "blue", "green", "white", "yellow", "magenta", "cyan", "orange", "purple",
           "brown", "pink", "navy")  # fmt: skip


def make_clip(path: Path, colour: str, tone: int, seconds: float = 2.0) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s={W}x{H}:r=30",
         "-f", "lavfi", "-i", f"sine=f={tone}:r=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("transitions")
    return [
        make_clip(directory / f"{colour}.mp4", colour, 300 + 100 * n)
        for n, colour in enumerate(COLOURS)
    ]


def inputs(paths, transitions=(), hashes=None) -> list[Clip]:
    """Clips in order; transitions[n] leads into clip n + 1."""
    result = []
    for n, path in enumerate(paths):
        into = transitions[n - 1] if 0 < n <= len(transitions) else None
        content = hashes[n] if hashes else None
        result.append(Clip(path, 0.0, None, probe(path), f"clip {n + 1}", content, into))
    return result


def rgb_at(path: Path, seconds: float) -> tuple[int, int, int]:
    """The colour at the centre of the frame shown at `seconds`."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{seconds}", "-i", str(path), "-frames:v", "1",
         "-vf", f"crop=2:2:{W // 2}:{H // 2}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return raw[0], raw[1], raw[2]


def rms_db(path: Path, start: float, length: float) -> float:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0", "-af",
         f"atrim=start={start}:duration={length},astats=measure_overall=RMS_level:"
         "measure_perchannel=0", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if "RMS level dB" in x)
    return float(line.split(":")[-1])


def render(tmp_path, clips, **options):
    settings = encode_settings("720p", "16:9", "low", FPS, threads=2)
    settings = type(settings)(**{**settings.__dict__, "width": W, "height": H})
    output = tmp_path / "out.mp4"
    return render_video(
        clips, settings, tmp_path / "work", output, RenderOptions(**options)
    ), output


def test_the_plan_overlaps_clips_by_each_transition(paths):
    clips = inputs(paths[:3], [Transition("crossfade", 0.5), Transition("cut", 0.5)])
    segments = plan_segments(clips, FPS)
    # One segment per clip: clip 1 ends crossfading into clip 2's first 0.5 s, clip 2
    # starts after them; a cut blends nothing.
    assert [(s.clip, s.kind) for s in segments] == [(0, "crossfade"), (1, "cut"), (2, "cut")]
    assert segments[0].span is clips[0]  # all of clip 1, its last 0.5 s blending
    assert (segments[0].into.trim_start, segments[0].into.duration) == (0.0, 0.5)
    assert (segments[1].span.trim_start, segments[1].span.duration) == (0.5, 1.5)
    assert segments[1].into is None
    assert segments[2].span is clips[2]  # untouched: the same segment (and key) as without any


def test_a_transition_longer_than_its_clip_is_named():
    info = info_for(1.0)
    a = Clip(Path("a.mp4"), 0.0, None, info, "clip 1")
    b = Clip(Path("b.mp4"), 0.0, None, info, "clip 2", None, Transition("fade", 1.0))
    with pytest.raises(ClipError, match=r"clip 1: its transitions \(1.0 s\) take all of its"):
        plan_segments([a, b], FPS)


def test_crossfade_blends_and_shortens_the_video(paths, tmp_path):
    clips = inputs(paths[:2], [Transition("crossfade", 1.0)])
    result, output = render(tmp_path, clips)
    assert result.duration_s == pytest.approx(3.0, abs=0.05)  # 2 + 2 - 1
    red, middle, blue = rgb_at(output, 0.5), rgb_at(output, 1.5), rgb_at(output, 2.5)
    assert red[0] > 200 and red[2] < 50 and blue[2] > 200 and blue[0] < 50
    # Half way through, both clips show: red and blue each near half strength.
    assert 80 < middle[0] < 180 and 80 < middle[2] < 180, middle
    # The sound carries across: no gap in the middle of the crossfade.
    assert rms_db(output, 1.2, 0.6) > rms_db(output, 0.2, 0.6) - 6


def test_fade_goes_through_black(paths, tmp_path):
    clips = inputs(paths[:2], [Transition("fade", 1.0)])
    result, output = render(tmp_path, clips)
    assert result.duration_s == pytest.approx(3.0, abs=0.05)
    assert max(rgb_at(output, 1.5)) < 30  # the middle of the fade is black
    assert rgb_at(output, 2.8)[2] > 200


def test_captions_show_at_their_cue_times_only(paths, tmp_path):
    srt = "1\n00:00:01,000 --> 00:00:02,500\nHELLO WORLD\n"
    cues = tuple(parse_captions(srt, "srt"))
    clips = inputs(paths[:2], [Transition("crossfade", 0.5)])
    _, plain = render(tmp_path / "plain", clips)
    _, burned = render(tmp_path / "burned", clips, captions=BurnIn(cues, parse_style(None)))

    def differs(at: float) -> int:
        rows = []
        for path in (plain, burned):
            rows.append(subprocess.run(
                ["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", str(path), "-frames:v", "1",
                 "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                check=True, capture_output=True,
            ).stdout)  # fmt: skip
        return sum(1 for x, y in zip(*rows, strict=True) if abs(x - y) > 40)

    # On screen across the crossfade (1.5-2.0 s) and the clips either side; gone outside.
    assert differs(0.5) == 0 and differs(3.0) == 0
    assert all(differs(t) > 100 for t in (1.2, 1.75, 2.3))


class CountingCache:
    """An in-memory segment cache that counts what had to be rendered."""

    def __init__(self, root: Path):
        self.root, self.stored, self.fetched = root, [], []
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / name.replace("/", "_")

    def fetch(self, name, out) -> bool:
        if not self._path(name).exists():
            return False
        self.fetched.append(name)
        out.write_bytes(self._path(name).read_bytes())
        return True

    def store(self, name, path) -> None:
        self.stored.append(name)
        self._path(name).write_bytes(path.read_bytes())

    def rendered(self, suffix: str) -> list[str]:
        """The clips (content hashes) whose pictures (.mp4) or sound (.wav) were stored."""
        return sorted(n.split("/")[0] for n in self.stored if n.endswith(suffix))


def test_a_reexport_renders_only_what_touches_the_changed_clip(paths, tmp_path):
    """Twelve clips, eleven crossfades, loudness on: clip 7 regenerated renders its own
    segment and clip 6's, which ends blending into it; nothing else."""
    transitions = [Transition("crossfade", 0.5)] * 11
    hashes = [f"sha-{n}" for n in range(12)]
    cache = CountingCache(tmp_path / "cache")
    settings = encode_settings("720p", "16:9", "low", FPS, threads=2, loudness=-14.0)
    settings = type(settings)(**{**settings.__dict__, "width": W, "height": H})
    first = render_video(inputs(paths, transitions, hashes), settings, tmp_path / "w",
                         tmp_path / "first.mp4", cache=cache)  # fmt: skip
    assert first.segments == 12  # one per clip, its pictures and its sound cached
    assert cache.rendered(".mp4") == cache.rendered(".wav") == sorted(hashes)
    assert first.duration_s == pytest.approx(12 * 2.0 - 11 * 0.5, abs=0.05)

    changed = list(paths)
    changed[6] = make_clip(tmp_path / "new.mp4", "gray", 950)
    hashes[6] = "sha-new"
    cache.stored.clear()
    again = render_video(inputs(changed, transitions, hashes), settings, tmp_path / "w",
                         tmp_path / "again.mp4", cache=cache)  # fmt: skip
    assert again.reused_segments == 10
    assert cache.rendered(".mp4") == cache.rendered(".wav") == ["sha-5", "sha-new"]
    assert again.duration_s == pytest.approx(first.duration_s, abs=0.01)
    # Elsewhere the picture is what it was; where clip 7 plays alone, it is the new one.
    for at in (0.5, 5.0, first.duration_s - 0.5):
        assert rgb_at(tmp_path / "again.mp4", at) == rgb_at(tmp_path / "first.mp4", at)
    middle_of_7 = 6 * 1.5 + 1.0
    assert rgb_at(tmp_path / "again.mp4", middle_of_7) != rgb_at(tmp_path / "first.mp4",
                                                                 middle_of_7)  # fmt: skip


def streams(path: Path) -> list[dict]:
    import json

    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)["streams"]


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "mov_text"), ("webm", "webvtt")])
def test_soundtrack_and_soft_captions_are_added_in_the_join(paths, tmp_path, fmt, codec):
    from export_pipeline.domain.soundtrack import Soundtrack
    from export_pipeline.media.soundtrack import Music

    silent = tmp_path / "silent.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s={W}x{H}:r=30:d=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(silent)],
        check=True,
    )  # fmt: skip
    music = tmp_path / "music.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=220:d=1.5", str(music)],
        check=True,
    )  # fmt: skip
    clips = inputs([paths[0], silent])
    cues = tuple(parse_captions("1\n00:00:00,500 --> 00:00:01,500\nHello\n", "srt"))
    settings = encode_settings("720p", "16:9", "low", FPS, threads=2, format=fmt)
    settings = type(settings)(**{**settings.__dict__, "width": W, "height": H})
    output = tmp_path / f"out.{settings.format.extension}"
    track = Soundtrack(volume=0.5, fade_in=0.1, fade_out=0.1, loop=True)
    options = RenderOptions(music=Music(music, track, 1.5), subtitles=cues)
    result = render_video(clips, settings, tmp_path / "w", output, options)
    assert result.duration_s == pytest.approx(4.0, abs=0.05)
    kinds = {s["codec_type"]: s["codec_name"] for s in streams(output)}
    assert kinds["subtitle"] == codec
    text = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(output), "-map", "0:s:0", "-f", "srt", "-"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (start, end), *_ = [
        [float(t.replace(",", ".").split(":")[-1]) for t in line.split(" --> ")]
        for line in text.splitlines()
        if "-->" in line
    ]
    # On the final timeline (WebM shifts every stream by Opus's 14 ms of priming alike).
    video_start = float(next(s for s in streams(output) if s["codec_type"] == "video")
                        .get("start_time", 0))  # fmt: skip
    assert "Hello" in text
    assert start - video_start == pytest.approx(0.5, abs=0.02) and end - start == pytest.approx(1.0)
    # The silent clip now carries the looped music, at about the set volume.
    assert rms_db(output, 2.5, 1.0) > -40
