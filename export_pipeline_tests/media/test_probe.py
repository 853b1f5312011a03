from __future__ import annotations

import json
import random
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media import probe as probe_module
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.inputs import CLIP_FORMATS
from export_pipeline.media.probe import (
    InvalidMedia,
    MediaInfo,
    check_decodable,
    decode_check_argv,
    parse_probe,
    probe,
    probe_and_check,
    probe_argv,
)
from export_pipeline.media.samples import make_sample_clip
from export_pipeline_tests.media.tools import value_after


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("probe")


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    return make_sample_clip(
        media_dir / "clip.mp4", width=320, height=240, fps=25, duration=1.0, audio_channels=2
    )


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def top_level_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level MP4 box."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def test_probe_describes_a_clip(clip: Path):
    info = probe(clip)
    assert info.format_name.startswith("mov,mp4")
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.size_bytes == clip.stat().st_size
    assert (info.video_codec, info.width, info.height) == ("h264", 320, 240)
    assert info.fps == Fraction(25)
    assert info.sar == Fraction(1)
    assert info.has_audio
    assert (info.audio_codec, info.audio_channels, info.audio_rate) == ("aac", 2, 48000)
    assert info.as_metadata() == {
        "codec": "h264",
        "width": 320,
        "height": 240,
        "fps": 25.0,
        "duration": round(info.duration, 3),
        "audio": True,
        "bytes": info.size_bytes,
    }
    json.dumps(info.as_metadata())


def test_probe_and_check_accepts_a_good_clip(clip: Path):
    assert probe_and_check(clip) == probe(clip)


def test_probe_reports_ntsc_rate_non_square_pixels_and_silence(media_dir: Path):
    path = make_sample_clip(
        media_dir / "anamorphic.mp4",
        width=360,
        height=360,
        fps=Fraction(30000, 1001),
        duration=0.5,
        audio=False,
        sar=Fraction(16, 9),
    )
    info = probe(path)
    assert info.fps == Fraction(30000, 1001)
    assert info.sar == Fraction(16, 9)
    assert not info.has_audio
    assert info.audio_codec is info.audio_channels is info.audio_rate is None
    assert info.as_metadata()["audio"] is False


def test_empty_file(media_dir: Path):
    with pytest.raises(InvalidMedia, match=r"is empty \(0 bytes\)") as caught:
        probe(write(media_dir / "empty.mp4", b""))
    assert str(caught.value) == "empty.mp4 is empty (0 bytes)"
    assert caught.value.reason == "is empty (0 bytes)"


def test_missing_file(media_dir: Path):
    with pytest.raises(InvalidMedia, match="does not exist"):
        probe(media_dir / "nope.mp4")


def test_html_error_page(media_dir: Path):
    page = "\n<!DOCTYPE html><html><body>403 Forbidden</body></html>"
    with pytest.raises(InvalidMedia, match=r"is not a video file \(looks like HTML\)"):
        probe(write(media_dir / "page.mp4", page))


def test_truncated_mp4(media_dir: Path, clip: Path):
    data = clip.read_bytes()
    # FFmpeg writes the index (moov) last; cut the file before it.
    moov = next(offset for kind, offset, _ in top_level_boxes(data) if kind == b"moov")
    path = write(media_dir / "truncated.mp4", data[: moov // 2])
    with pytest.raises(
        InvalidMedia, match=r"is incomplete \(its index, the MP4 moov box, is missing"
    ):
        probe(path)


def test_random_bytes(media_dir: Path):
    noise = random.Random(7).randbytes(4096)
    with pytest.raises(InvalidMedia, match="could not be decoded: Invalid data found"):
        probe(write(media_dir / "noise.mp4", noise))


def test_corrupt_frames_fail_the_decode_check(media_dir: Path, clip: Path):
    # Index first (faststart), so probing succeeds, then garbage instead of the frames.
    faststart = media_dir / "faststart.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy"]
        + ["-movflags", "+faststart", str(faststart)],
        check=True,
    )
    data = bytearray(faststart.read_bytes())
    mdat = next(offset for kind, offset, _ in top_level_boxes(bytes(data)) if kind == b"mdat")
    noise = random.Random(1).randbytes(len(data) - mdat - 16)
    data[mdat + 16 :] = noise
    path = write(media_dir / "corrupt.mp4", bytes(data))
    assert probe(path).width == 320
    with pytest.raises(InvalidMedia, match="could not be decoded: ") as caught:
        check_decodable(path)
    assert "@ 0x" not in caught.value.reason
    with pytest.raises(InvalidMedia):
        probe_and_check(path)


def test_audio_only_file(media_dir: Path):
    path = media_dir / "voice.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.5"]
        + ["-c:a", "aac", str(path)],
        check=True,
    )
    with pytest.raises(InvalidMedia, match=r"has no video stream \(audio only\)"):
        probe(path)


def playlists(media_dir: Path, clip: Path) -> dict[str, Path]:
    """A playlist of each kind, disguised as .mp4, that points at another local file."""
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n"
    hls += f"{clip.name}\n#EXT-X-ENDLIST\n"
    return {
        "hls": write(media_dir / "playlist.mp4", hls),
        "concat": write(media_dir / "list.mp4", f"ffconcat version 1.0\nfile '{clip.name}'\n"),
    }


@pytest.mark.parametrize(
    ("kind", "message"),
    [("hls", "is an HLS playlist"), ("concat", "is an ffconcat playlist")],
)
def test_playlists_are_rejected(media_dir: Path, clip: Path, kind: str, message: str):
    with pytest.raises(InvalidMedia, match=message):
        probe(playlists(media_dir, clip)[kind])


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_playlists_are_blocked_by_the_demuxer_whitelist(
    media_dir: Path, clip: Path, kind: str, monkeypatch
):
    path = playlists(media_dir, clip)[kind]
    # Without the whitelist FFprobe happily follows the playlist to the other file...
    unguarded = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
    )
    if kind == "hls":
        assert json.loads(unguarded.stdout)["format"]["format_name"] == "hls"
    # ...with it, FFprobe refuses before opening anything else.
    guarded = subprocess.run(probe_argv(path), capture_output=True, text=True)
    assert guarded.returncode != 0
    assert f"[{kind} @ " in guarded.stderr and "Format not on whitelist" in guarded.stderr
    # And probe says so even when its first-bytes check does not recognise the file.
    monkeypatch.setattr(probe_module, "_sniff", lambda head: None)
    with pytest.raises(InvalidMedia, match=f"not a supported video file .*format: {kind}"):
        probe(path)


VIDEO = {
    "codec_type": "video",
    "codec_name": "h264",
    "width": 1920,
    "height": 1080,
    "r_frame_rate": "30/1",
    "avg_frame_rate": "2997/100",
    "sample_aspect_ratio": "1:1",
}


def test_parse_probe_applies_rotation():
    stream = {**VIDEO, "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}
    info = parse_probe(Path("phone.mp4"), {"format": {"duration": "3.0"}, "streams": [stream]})
    assert (info.width, info.height) == (1080, 1920)


def test_parse_probe_prefers_the_clean_rate_and_defaults_sar():
    stream = {**VIDEO, "r_frame_rate": "30000/1001", "sample_aspect_ratio": "0:1"}
    info = parse_probe(Path("a.mp4"), {"format": {"duration": "3.0"}, "streams": [stream]})
    assert info.fps == Fraction(30000, 1001)
    assert info.sar == Fraction(1)
    # A nominal rate within 1 % of the average is the cleaner number (VFR phone clips).
    info = parse_probe(Path("a.mp4"), {"format": {"duration": "3.0"}, "streams": [VIDEO]})
    assert info.fps == Fraction(30)
    # One that is far off is a timebase artefact: the average wins.
    stream = {**VIDEO, "r_frame_rate": "90000/1"}
    info = parse_probe(Path("a.mp4"), {"format": {"duration": "3.0"}, "streams": [stream]})
    assert info.fps == Fraction(2997, 100)


def test_parse_probe_ignores_cover_art(tmp_path: Path):
    cover = {**VIDEO, "codec_name": "mjpeg", "disposition": {"attached_pic": 1}}
    audio = {"codec_type": "audio", "codec_name": "mp3", "channels": 2, "sample_rate": "44100"}
    data = {"format": {"duration": "3.0"}, "streams": [cover, audio]}
    with pytest.raises(InvalidMedia, match=r"has no video stream \(audio only\)"):
        parse_probe(tmp_path / "song.mp4", data)


def test_parse_probe_without_duration():
    with pytest.raises(InvalidMedia, match="has no duration"):
        parse_probe(Path("still.mp4"), {"format": {}, "streams": [VIDEO]})


def test_media_info_is_a_value():
    info = MediaInfo(
        "mov", 1.0, 10, "h264", 2, 2, Fraction(30), Fraction(1), False, None, None, None
    )
    assert info == MediaInfo(
        "mov", 1.0, 10, "h264", 2, 2, Fraction(30), Fraction(1), False, None, None, None
    )


@pytest.mark.parametrize("name", ["clip", "anamorphic"])
def test_a_kept_probe_record_gives_back_the_same_info(media_dir: Path, clip: Path, name: str):
    """Through JSON (as in the clip manifest): exact rates, pixel shape, every field."""
    path = clip if name == "clip" else make_sample_clip(
        media_dir / "ntsc-anamorphic.mp4", width=360, height=360, fps=Fraction(30000, 1001),
        duration=0.5, audio=False, sar=Fraction(16, 9),
    )  # fmt: skip
    info = probe(path)
    record = json.loads(json.dumps(info.to_record()))
    assert MediaInfo.from_record(record) == info


@pytest.mark.parametrize(
    "change",
    [
        {"version": probe_module.PROBE_VERSION + 1},  # another probe might read it otherwise
        {"version": None},
        {"fps": "30/0"},
        {"fps": "fast"},
        {"sar": []},
    ],
)
def test_a_stale_or_damaged_probe_record_is_not_used(clip: Path, change: dict):
    record = {**probe(clip).to_record(), **change}
    assert MediaInfo.from_record(record) is None


def test_no_probe_record():
    assert MediaInfo.from_record(None) is None
    assert MediaInfo.from_record({}) is None
    assert MediaInfo.from_record({"version": probe_module.PROBE_VERSION}) is None


def test_probe_argv():
    argv = FFmpeg(ffprobe="/usr/bin/ffprobe").command(probe_argv(Path("/clips/a b.mp4")))
    assert argv[0] == "/usr/bin/ffprobe"
    assert value_after(argv, "-protocol_whitelist") == "file"
    assert value_after(argv, "-format_whitelist") == CLIP_FORMATS
    assert value_after(argv, "-of") == "json"
    assert "-show_format" in argv and "-show_streams" in argv
    assert argv[-1] == "file:/clips/a b.mp4"


def test_decode_check_argv():
    argv = decode_check_argv(Path("/clips/a.mp4"))
    assert "-xerror" in argv
    assert value_after(argv, "-format_whitelist") == CLIP_FORMATS
    assert argv.index("-t") < argv.index("-i")
    assert argv[-3:] == ["-f", "null", "-"]
