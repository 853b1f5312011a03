"""The benchmark corpus makes what it claims: each class's clips at the class's size and frame
rate, the length asked for, H.264/AAC, tagged with the class, the same pictures every time.

Tiny scale so it runs in seconds: one clip of a few frames per class at a quarter of the
size (`Footage.scaled`: every size and speed in a recipe follows the class's size), and one
class at full size."""

import subprocess
from pathlib import Path

import pytest

from export_pipeline_tests.benchmarks.corpus import (
    CLASSES,
    Footage,
    clip_path,
    luma_stats,
    make_clip,
    make_clips,
    probe,
    real_footage,
)

SECONDS = 0.4  # 10 to 24 frames: enough to see motion, noise and the audio track
SMALL = {name: footage.scaled(4) for name, footage in CLASSES.items()}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Clip 1 of every class, at a quarter of its size."""
    directory = tmp_path_factory.mktemp("corpus")
    return {
        name: make_clip(footage, 1, clip_path(directory, footage, 1, SECONDS), SECONDS)
        for name, footage in SMALL.items()
    }


@pytest.mark.parametrize("name", list(CLASSES))
def test_clip_is_what_its_class_claims(clips, name):
    footage = SMALL[name]
    assert footage.fps == CLASSES[name].fps
    assert footage.width * 4 == CLASSES[name].width
    assert footage.height * 4 == CLASSES[name].height
    check_clip(clips[name], footage, 1)


def test_a_clip_at_full_size(tmp_path):
    footage = CLASSES["cartoon"]
    (path,) = make_clips(footage, tmp_path, clips=1, seconds=SECONDS)
    check_clip(path, footage, 0)


def check_clip(path: Path, footage: Footage, n: int) -> None:
    """Clip `n` of `footage`, `SECONDS` long, probed with ffprobe."""
    info = probe(path)
    assert info["comment"] == f"corpus:{footage.name}:{n}"
    assert (info["width"], info["height"]) == (footage.width, footage.height)
    assert info["fps"] == footage.fps
    assert info["frames"] == footage.frames(SECONDS)
    assert info["duration"] == pytest.approx(SECONDS, abs=0.05)  # AAC frames round it up a bit
    assert (info["video_codec"], info["pix_fmt"], info["audio_codec"]) == ("h264", "yuv420p", "aac")


def test_the_corpus_covers_the_required_formats():
    """Frame rates 24, 25, 30 and 60; 720p (upscaled by a 1080p export), native 1080p, 4k."""
    assert {f.fps for f in CLASSES.values()} >= {24, 25, 30, 60}
    assert {f.height for f in CLASSES.values()} >= {720, 1080, 1440, 2160}
    assert {"detail", "grain", "motion", "cartoon", "lowlight", "text"} <= set(CLASSES)
    assert all(f.clips == 12 for f in CLASSES.values() if f.height < 2160)


def test_classes_differ_where_they_should(clips):
    """Low light is dark; grain and sensor noise change every pixel every frame; the
    cartoon is still where nothing moves."""
    stats = {name: luma_stats(path) for name, path in clips.items()}
    assert stats["lowlight"]["YAVG"] < 50 < min(stats[n]["YAVG"] for n in ("detail", "cartoon"))
    assert stats["grain"]["YDIF"] > 5 * stats["cartoon"]["YDIF"]
    assert stats["lowlight"]["YDIF"] > 5 * stats["cartoon"]["YDIF"]


@pytest.mark.parametrize("name", ["detail", "text"])
def test_same_arguments_same_pictures(tmp_path, name):
    """Generated twice in separate directories (textures and all): identical frames."""
    footage = SMALL[name]
    first, second = (make_clips(footage, tmp_path / d, clips=1, seconds=0.2)[0] for d in ("a", "b"))
    assert framehashes(first) == framehashes(second)


def framehashes(path: Path) -> str:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0", "-f", "framemd5", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))


def test_real_footage_is_fitted_into_one_frame_and_looped(tmp_path):
    """Sources of other shapes and rates (a 4:3 one at 25 fps, shorter than a clip): every
    clip at the class's 16:9 size and rate, the source's picture pillarboxed, as long as asked."""
    from fractions import Fraction

    from export_pipeline.media.samples import make_sample_clip

    square = make_sample_clip(tmp_path / "a.mp4", width=320, height=240, fps=Fraction(25),
                              duration=0.3)  # fmt: skip
    wide = make_sample_clip(tmp_path / "b.mp4", width=640, height=360, fps=Fraction(30),
                            duration=1.0, audio=False)  # fmt: skip
    footage = real_footage([square, wide], clips=2, fps=30)
    assert (footage.width, footage.height, footage.fps) == (640, 360, 30)
    first, second = make_clips(footage, tmp_path / "clips", seconds=SECONDS)
    for path in (first, second):
        info = probe(path)
        assert (info["width"], info["height"], info["fps"]) == (640, 360, 30)
        assert info["frames"] == footage.frames(SECONDS)  # 0.3 s looped to 0.4 s
        assert info["audio"]  # the source's, or a tone for the silent one
    assert luma_stats(first)["YAVG"] > 16  # the picture, not only bars
