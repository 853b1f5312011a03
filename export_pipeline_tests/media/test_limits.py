"""What one file may cost: frame size, memory and CPU time of every FFmpeg/ffprobe process,
and files that hold less than they declare."""

from __future__ import annotations

import resource
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from export_pipeline.appdb import status as st
from export_pipeline.media.probe import (
    InvalidMedia,
    check_decodable,
    parse_probe,
    probe,
    probe_and_check,
)
from export_pipeline.media.runner import FFmpegError, Limits, run_ffmpeg
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

HUGE = 16000


def huge_frame_file(directory: Path) -> Path:
    """A 1.5 KB MOV whose Motion-JPEG frames declare 16000x16000 (the frame headers and the
    sample description patched), the shape of the 752 KB file that made FFmpeg take 2.7 GB."""
    small = directory / "small.mov"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=160x160:r=1:d=2",
         "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-f", "mov", str(small)], check=True,
    )  # fmt: skip
    data = bytearray(small.read_bytes())
    size = HUGE.to_bytes(2, "big")
    at = 0
    while (at := data.find(b"\xff\xc0", at)) != -1:  # JPEG SOF0: length, precision, H, W
        data[at + 5 : at + 9] = size + size
        at += 2
    entry = data.find(b"stsd") + 16  # the sample entry's format code ("jpeg")
    assert data[entry : entry + 4] == b"jpeg"
    width_at = entry + 4 + 6 + 2 + 2 + 2 + 4 + 4 + 4  # past the video sample entry header
    data[width_at : width_at + 4] = size + size
    path = directory / "huge.mov"
    path.write_bytes(data)
    return path


def children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def test_a_huge_declared_frame_is_refused_at_probe_time_cheaply(tmp_path: Path):
    path = huge_frame_file(tmp_path)
    with pytest.raises(InvalidMedia) as info:
        probe_and_check(path)
    assert str(info.value) == (
        "huge.mov is 16000x16000; the largest frame accepted is 8192 pixels a side and "
        "35.4 megapixels: export the clip at a lower resolution"
    )
    # ffprobe alone once took 664 MB on such a file; -max_pixels keeps it small.
    assert children_peak_mb() < 400


def test_the_decoder_itself_refuses_a_huge_frame(tmp_path: Path):
    """Even past the probe (a header that lies), the decoder will not allocate the frame."""
    with pytest.raises(InvalidMedia) as info:
        check_decodable(huge_frame_file(tmp_path))
    assert "is 16000x16000; the largest frame accepted" in str(info.value)


@pytest.mark.parametrize(("width", "height"), [(9000, 100), (100, 9000), (8000, 8000)])
def test_frame_size_limits_per_side_and_in_pixels(width, height):
    data = {
        "streams": [{"codec_type": "video", "width": width, "height": height, "duration": "2"}],
        "format": {"format_name": "mov,mp4"},
    }
    with pytest.raises(InvalidMedia) as info:
        parse_probe(Path("x.mp4"), data)
    assert f"is {width}x{height}; the largest frame accepted" in str(info.value)


def test_a_4k_source_is_accepted():
    data = {
        "streams": [{"codec_type": "video", "width": 3840, "height": 2160, "duration": "2"}],
        "format": {"format_name": "mov,mp4"},
    }
    assert parse_probe(Path("x.mp4"), data).width == 3840


def encode_argv(out: Path, size: str = "1280x720", seconds: int = 2, preset: str = "medium"):
    return ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
            f"testsrc2=size={size}:rate=30:duration={seconds}", "-c:v", "libx264",
            "-preset", preset, "-f", "mp4", str(out)]  # fmt: skip


def test_running_out_of_memory_reads_as_that(tmp_path: Path):
    with pytest.raises(FFmpegError) as info:
        run_ffmpeg(encode_argv(tmp_path / "out.mp4"), limits=Limits(memory_mb=64, cpu_s=0))
    assert info.value.over_limit
    assert "ran out of memory (limit 64 MB per FFmpeg process)" in str(info.value)
    assert "could not be decoded" not in str(info.value)


def test_running_out_of_cpu_time_reads_as_that(tmp_path: Path):
    argv = encode_argv(tmp_path / "out.mp4", size="1920x1080", seconds=20, preset="slow")
    with pytest.raises(FFmpegError) as info:
        run_ffmpeg(argv, limits=Limits(memory_mb=0, cpu_s=1))
    assert info.value.over_limit
    assert "used more than 1 CPU seconds, the limit per FFmpeg process" in str(info.value)


def test_default_limits_leave_room_for_a_normal_encode(tmp_path: Path):
    run_ffmpeg(encode_argv(tmp_path / "out.mp4", preset="superfast"))  # Limits() defaults
    assert probe(tmp_path / "out.mp4").duration == pytest.approx(2.0, abs=0.05)


def test_an_export_over_the_memory_limit_fails_at_once(settings, store, instance, cdn):
    settings = replace(settings, ffmpeg_memory_mb=64)
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    row = store.get(request_id)
    assert not result.success and row["status"] == st.FAILED
    assert row["retry_count"] == 0  # a limit hit once is hit again: no retry
    assert "ran out of memory (limit 64 MB per FFmpeg process)" in row["error_message"]


# --- files that hold less than they declare ------------------------------------------------


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("whole")
    mp4 = directory / "faststart.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=640x360:rate=25:duration=10", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=10", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-movflags", "+faststart", str(mp4)], check=True,
    )  # fmt: skip
    mkv = directory / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp4), "-c", "copy", str(mkv)],
                   check=True)  # fmt: skip
    return {"mp4": mp4, "mkv": mkv}


def cut(path: Path, share: float, directory: Path) -> Path:
    data = path.read_bytes()
    out = directory / f"cut-{path.name}"
    out.write_bytes(data[: int(len(data) * share)])
    return out


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_a_file_cut_short_is_incomplete(ten_seconds, kind, tmp_path: Path):
    whole = ten_seconds[kind]
    probe_and_check(whole)  # the whole file passes
    with pytest.raises(InvalidMedia) as info:
        probe_and_check(cut(whole, 0.6, tmp_path))
    assert info.value.reason == "is incomplete (6.0 s of 10.0 s decodable); upload it again"


def test_a_cut_short_clip_fails_the_export_with_the_message(
    ten_seconds, settings, store, instance, cdn
):
    (cdn.root / "cut.mp4").write_bytes(cut(ten_seconds["mp4"], 0.6, cdn.root).read_bytes())
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("cut.mp4"), 1)])
    row = store.get(request_id)
    assert row["status"] == st.FAILED and row["retry_count"] == 0
    assert row["error_message"] == (
        "downloaded_clips failed: clip 1 (scene 1): the file is incomplete "
        "(6.0 s of 10.0 s decodable); upload it again"
    )
