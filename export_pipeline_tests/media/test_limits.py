"""What one file may cost: frame size, memory and CPU time of every FFmpeg/ffprobe process,
and files that hold less than they declare."""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.defs.settings import Settings
from export_pipeline.domain import status as st
from export_pipeline.media import system
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.poster import poster_argv
from export_pipeline.media.probe import (
    InvalidMedia,
    check_decodable,
    decode_check_argv,
    packets_argv,
    parse_probe,
    probe,
    probe_and_check,
    probe_argv,
)
from export_pipeline.media.runner import FFmpegError, Limits, Usage, capture, run_ffmpeg
from export_pipeline.media.segment import segment_argv
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export
from export_pipeline_tests.media.tools import segment

HUGE = 16000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(side: int) -> bytes:
    """A real side x side grey PNG: 256 MB of pixels at 16000, 1.1 MB of deflate."""
    deflate = zlib.compressobj(1)
    row = b"\x00" + b"\x80" * side  # filter "none", mid grey
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"".join(
        [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", idat)]
        + [_png_chunk(b"IEND", b"")]
    )


def huge_frame_file(directory: Path) -> Path:
    """A 1.1 MB MOV holding one real 16000x16000 PNG frame, the shape of the 752 KB file that
    made FFmpeg take 2.7 GB: a 16x16 PNG MOV from FFmpeg, its one sample swapped for the big
    picture (the index stays right: the sample is the last thing in `mdat`, `moov` follows)."""
    small = directory / "small.mov"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=16x16:r=1:d=1",
         "-c:v", "png", "-pix_fmt", "gray", "-f", "mov", str(small)], check=True,
    )  # fmt: skip
    data = small.read_bytes()
    mdat = data.index(b"mdat") - 4
    (mdat_size,) = struct.unpack(">I", data[mdat : mdat + 4])
    head, moov = data[:mdat], bytearray(data[mdat + mdat_size :])
    picture = flat_png(HUGE)
    sizes = moov.index(b"stsz") + 8  # after version/flags: the common sample size, or 0
    at = sizes if struct.unpack(">I", moov[sizes : sizes + 4])[0] else sizes + 8
    moov[at : at + 4] = struct.pack(">I", len(picture))
    entry = moov.index(b"stsd") + 16  # the sample entry's format code, then its frame size
    assert moov[entry : entry + 4] == b"png "
    moov[entry + 28 : entry + 32] = struct.pack(">HH", HUGE, HUGE)
    path = directory / "huge.mov"
    path.write_bytes(head + struct.pack(">I", 8 + len(picture)) + b"mdat" + picture + moov)
    return path


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    return huge_frame_file(tmp_path_factory.mktemp("huge"))


def test_a_huge_declared_frame_is_refused_at_probe_time_cheaply(huge: Path):
    # Under a memory limit smaller than the frame: refused for its size, not out of memory.
    with pytest.raises(InvalidMedia) as info:
        probe_and_check(huge, FFmpeg(limits=Limits(memory_mb=200)))
    assert str(info.value) == (
        "huge.mov is 16000x16000; the largest frame accepted is 8192 pixels a side and "
        "35.4 megapixels: export the clip at a lower resolution"
    )
    # ffprobe alone decodes the picture (256 MB) unless -max_pixels stops the decoder.
    bounded = capture(probe_argv(huge), timeout_s=60)
    unbounded = ["ffprobe", "-v", "error", "-show_streams", f"file:{huge}"]
    assert "exceeds specified max pixel count 35389440" in bounded.stderr
    # (The bounded probe's own peak, about 90 MB, is not asserted: a child forked from a
    # large test process reports that process's size as its peak, which says nothing.)
    assert capture(unbounded, timeout_s=60).usage.peak_rss_mb > 256


def test_the_decoder_itself_refuses_a_huge_frame(huge: Path):
    """Even past the probe (a header that lies), the decoder will not allocate the frame."""
    with pytest.raises(InvalidMedia) as info:
        check_decodable(huge)
    assert "is 16000x16000; the largest frame accepted" in str(info.value)


def test_the_frame_limits_are_settings(tmp_path: Path):
    hd = tmp_path / "hd.mp4"
    run_ffmpeg(encode_argv(hd, size="1280x720", seconds=1, preset="ultrafast"))
    small = Limits(max_side=1000, max_pixels=640 * 480)
    with pytest.raises(InvalidMedia) as info:
        probe(hd, FFmpeg(limits=small))
    assert info.value.reason == (
        "is 1280x720; the largest frame accepted is 1000 pixels a side and 0.3 megapixels: "
        "export the clip at a lower resolution"
    )
    # The decoder's own ceiling follows the setting too.
    with pytest.raises(InvalidMedia, match="is 1280x720; the largest frame accepted"):
        check_decodable(hd, FFmpeg(limits=small))
    for argv in (
        probe_argv(hd, max_pixels=307200),
        packets_argv(hd, max_pixels=307200),
        decode_check_argv(hd, max_pixels=307200),
    ):
        assert argv[argv.index("-max_pixels") + 1] == "307200"
        assert argv.index("-max_pixels") < argv.index(f"file:{hd}")  # an input option


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


def test_a_decode_over_the_memory_limit_reads_as_that(huge: Path):
    """The memory limit holds where the frame-size checks are not asked (no -max_pixels)."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{huge}", "-f", "null", "-"]
    with pytest.raises(FFmpegError) as info:
        run_ffmpeg(argv, limits=Limits(memory_mb=200))
    assert info.value.over_limit
    assert info.value.reason == "ran out of memory (limit 200 MB per FFmpeg process)"


def test_the_limits_are_the_data_segment_and_cpu_time_of_the_child():
    show = "import resource as r; print(r.getrlimit(r.RLIMIT_DATA), r.getrlimit(r.RLIMIT_CPU))"
    result = capture([sys.executable, "-c", show], timeout_s=30, limits=Limits(1024, 99))
    assert result.stdout.decode().split() == ["(1073741824,", "1073741824)", "(99,", "104)"]
    assert result.usage is not None and result.usage.cpu_s > 0


@pytest.mark.parametrize(
    ("returncode", "stderr", "usage", "reason"),
    [
        # FFmpeg catches SIGXCPU and may exit quietly: the CPU time it used tells.
        (255, "Immediate exit requested", Usage(10.0, 100), "used more than 10 CPU seconds"),
        (-signal.SIGXCPU, "", None, "used more than 10 CPU seconds"),
        (1, "x264 [error]: malloc of size 7332480 failed", None, "ran out of memory (limit 400"),
        (1, "Error while decoding stream #0:0: Cannot allocate memory", None, "ran out of"),
        # Thread or buffer set-up failures: memory when the process was near its limit.
        (1, "Error while opening decoder: Resource temporarily unavailable", Usage(1, 300), "ran"),
        (1, "Error while opening decoder: Resource temporarily unavailable", Usage(1, 40), None),
        (1, "video_get_buffer: image parameters invalid\nget_buffer() failed", Usage(1, 300), None),
        (-signal.SIGKILL, "", Usage(1, 300), "was killed by the system (SIGKILL), most likely"),
        (1, "Invalid data found when processing input", Usage(3, 390), None),
    ],
)
def test_failures_are_put_down_to_a_limit_only_on_evidence(returncode, stderr, usage, reason):
    explained = Limits(memory_mb=400, cpu_s=10).explain(returncode, stderr, usage)
    assert (explained is None) if reason is None else explained.startswith(reason)


def test_default_limits_leave_room_for_a_normal_encode(tmp_path: Path):
    run_ffmpeg(encode_argv(tmp_path / "out.mp4", preset="superfast"))  # Limits() defaults
    assert probe(tmp_path / "out.mp4").duration == pytest.approx(2.0, abs=0.05)


def test_an_export_over_the_memory_limit_fails_at_once(settings, store, instance, cdn):
    settings = settings.replace(media={"memory_mb": 64})
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
    plain = directory / "plain.mp4"  # FFmpeg's default layout: the index (moov) at the end
    for out in (mkv, plain):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp4), "-c", "copy", str(out)],
                       check=True)  # fmt: skip
    return {"mp4": mp4, "mkv": mkv, "plain": plain}


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


def test_an_mp4_cut_before_its_index_says_so(ten_seconds, tmp_path: Path):
    with pytest.raises(InvalidMedia) as info:
        probe_and_check(cut(ten_seconds["plain"], 0.6, tmp_path))
    assert info.value.reason == (
        "is incomplete (its index, the MP4 moov box, is missing: the file was cut short or "
        "never finished); upload it again"
    )


def lavfi_clip(path: Path, video: str, audio: str | None, *options: str) -> Path:
    audio_input = ["-f", "lavfi", "-i", audio, "-c:a", "aac"] if audio else []
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video, *audio_input,
         "-c:v", "libx264", "-preset", "ultrafast", *options, str(path)], check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("name", "video", "audio", "options"),
    [
        # Audio that outlasts the video (Matroska declares the longer one).
        ("audio-longer.mp4", "testsrc2=s=320x240:r=25:d=5", "sine=d=10", ()),
        ("audio-longer.mkv", "testsrc2=s=320x240:r=25:d=5", "sine=d=10", ()),
        # Variable frame rate: a third of every second's frames dropped, timestamps kept.
        (
            "vfr.mp4",
            "testsrc2=s=320x240:r=30:d=10,select='not(between(mod(n\\,30)\\,5\\,15))'",
            "sine=d=10",
            ("-fps_mode", "vfr"),
        ),
        (
            "vfr.mkv",
            "testsrc2=s=320x240:r=30:d=10,select='lt(mod(n\\,30)\\,20)'",
            None,
            ("-fps_mode", "vfr"),
        ),  # fmt: skip
        ("video-only.mp4", "testsrc2=s=320x240:r=24000/1001:d=3", None, ()),
    ],
)
def test_whole_files_are_complete(name, video, audio, options, tmp_path: Path):
    path = lavfi_clip(tmp_path / name, video, audio, *options)
    info = probe_and_check(path)
    assert info.duration > 2.9


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


# --- threads: memory grows with them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "150000 100000"}, 2),  # cgroup v2, 1.5 CPUs' worth: 2
        ({"cpu.max": "max 100000"}, None),  # no quota: the CPUs it may run on
        ({"quota": "100000", "period": "100000"}, 1),  # cgroup v1
        ({"quota": "-1", "period": "100000"}, None),
    ],
)
def test_cpus_follow_the_containers_quota(files, cpus, tmp_path: Path, monkeypatch):
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    monkeypatch.setattr(
        system,
        "_CGROUP_CPU_FILES",
        ((str(tmp_path / "cpu.max"), ""), (str(tmp_path / "quota"), str(tmp_path / "period"))),
    )
    expected = min(cpus or 1000, len(os.sched_getaffinity(0)))
    assert system.available_cpus() == expected
    assert system.encoder_threads() == math.ceil(expected * 1.5)


def test_segments_bound_encoder_and_filter_threads_and_the_decoded_frame():
    settings = encode_settings("4k", "16:9", "high", Fraction(30), threads=3)
    job = segment(Path("/c/a.mp4"), 0.0, 2.0, width=3840, height=2160)
    argv = segment_argv(job, settings)
    assert argv[argv.index("libx264") + 1 : argv.index("libx264") + 3] == ["-threads", "3"]
    assert argv[argv.index("-filter_complex_threads") + 1] == "3"
    assert argv[argv.index("-threads") + 1] == "2"  # the decoder's, before -i
    assert argv[argv.index("-max_pixels") + 1] == str(8192 * 4320)
    # A clip accepted under a higher configured ceiling is not refused by its decoder.
    big = segment(Path("/c/a.mp4"), 0.0, 2.0, width=10000, height=6000)
    argv = segment_argv(big, settings)
    assert argv[argv.index("-max_pixels") + 1] == "60000000"
    assert encode_settings("4k", "16:9", "high", Fraction(30)).threads >= 2


def test_the_poster_decoder_is_bounded_too(tmp_path: Path):
    argv = poster_argv(tmp_path / "v.mp4", tmp_path / "p.jpg", 1.0)
    assert argv[argv.index("-max_pixels") + 1] == str(8192 * 4320)
    assert argv.index("-threads") < argv.index(f"file:{tmp_path / 'v.mp4'}")


def test_the_limits_come_from_the_environment(tmp_path: Path):
    env = {
        "EXPORT_PIPELINE_HOME": str(tmp_path),
        "EXPORT_FFMPEG_MEMORY_MB": "2048",
        "EXPORT_FFMPEG_CPU_S": "900",
        "EXPORT_MAX_INPUT_SIDE": "4096",
        "EXPORT_MAX_INPUT_PIXELS": str(4096 * 2160),
    }
    media = Settings.from_env(env).media
    assert media.limits() == Limits(2048, 900, max_side=4096, max_pixels=4096 * 2160)
    defaults = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path)}).media
    assert defaults.limits() == Limits()
