"""Every export is SDR BT.709 and tagged so, whatever its clips are (`media.colour`).

The clips are FFmpeg's `pal75bars` (white, then seven bars at 75 %, the last black) made
into what phones and old cameras record: HDR10 (PQ) and HLG, 10-bit HEVC in BT.2020 with
white at reference white (BT.2408: 203 cd/m², PQ code 573 of 1023, HLG 721, i.e. 75 %);
an untagged SD clip in the BT.601 matrix; an untagged HD one in BT.709. Exported one after
the other, every clip's bars must come out as their BT.709 values, read from the export as
its tags say (BT.709 matrix, limited range).

Tolerance: ±TOLERANCE of 255 per channel. It allows 4:2:0 chroma and 8-bit rounding at
each conversion (source, tone map, encode), measured at most 10 on the HDR clips and 2 on
the SDR ones; it catches a clip left as it came: read as BT.709, the PQ and HLG clips are
109 off, the SD BT.601 one 32.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from export_pipeline.media.clip import Clip, can_copy
from export_pipeline.media.colour import (
    BT601_TO_BT709,
    DECISIONS,
    HLG_TO_SDR,
    PQ_TO_SDR,
    SDR_BT709,
    colour_decision,
    colour_filters,
)
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.plan import RenderOptions
from export_pipeline.media.probe import MediaInfo, parse_probe, probe
from export_pipeline.media.render import render_video
from export_pipeline.media.segment import segment_key

TOLERANCE = 16
FPS = 25
SECONDS = 0.6  # each clip's length
# pal75bars: 100 % white, then yellow, cyan, green, magenta, red, blue at 75 %, black.
BARS = [(255, 255, 255), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191),
        (191, 0, 0), (0, 0, 191), (0, 0, 0)]  # fmt: skip
# HDR reference white is tone-mapped a little below SDR white (the roll-off above 0.8 of
# it, `colour.TONEMAP_KNEE`): measured 244.
HDR_WHITE = 244
BT709_TAGS = {
    "color_primaries": "bt709",
    "color_transfer": "bt709",
    "color_space": "bt709",
    "color_range": "tv",
}
# Reading an export: as its tags say.
READ_BT709 = "scale=in_color_matrix=bt709:in_range=tv,format=rgb24"


def _ffmpeg(*args: str) -> bytes:
    argv = ["ffmpeg", "-v", "error", "-nostdin", "-y", *args]
    return subprocess.run(argv, check=True, capture_output=True, timeout=120).stdout


def _bars(size: str) -> list[str]:
    return ["-f", "lavfi", "-i", f"pal75bars=s={size}:r={FPS}:d={SECONDS}"]


def make_hdr(path: Path, transfer: str) -> Path:
    """The bars as HDR: BT.709 light made linear (1.0 = 203 cd/m²), then BT.2020 primaries,
    `transfer`, BT.2020 matrix, 10-bit, lossless HEVC, tagged as phones tag it."""
    to_hdr = (
        "format=gbrp,scale=out_color_matrix=bt709:out_range=tv,format=yuv444p,"
        "zscale=tin=bt709:min=bt709:pin=bt709:rin=tv:t=linear:p=bt709:npl=203,format=gbrpf32le,"
        f"zscale=p=bt2020:t={transfer}:m=bt2020nc:r=tv:npl=203,format=yuv420p10le"
    )
    _ffmpeg(
        *_bars("320x180"), "-vf", to_hdr, "-c:v", "libx265",
        "-x265-params", "lossless=1:log-level=error", "-color_primaries", "bt2020",
        "-color_trc", transfer, "-colorspace", "bt2020nc", "-color_range", "tv", str(path),
    )  # fmt: skip
    return path


def make_sdr(path: Path, size: str, matrix: str) -> Path:
    """The bars in `matrix` (bt601 or bt709), limited range, untagged, near-lossless H.264."""
    convert = f"format=gbrp,scale=out_color_matrix={matrix}:out_range=tv,format=yuv420p"
    _ffmpeg(*_bars(size), "-vf", convert, "-c:v", "libx264", "-qp", "0", str(path))
    return path


def bars_at(path: Path, seconds: float, width: int, height: int) -> list[tuple[int, ...]]:
    """The colour at the middle of each of the eight bars of the frame at `seconds`."""
    frame = _ffmpeg("-ss", f"{seconds:.3f}", "-i", str(path), "-frames:v", "1",
                    "-vf", READ_BT709, "-f", "rawvideo", "-")  # fmt: skip
    row = height // 2 * width
    points = [(row + (2 * bar + 1) * width // 16) * 3 for bar in range(8)]
    return [tuple(frame[p : p + 3]) for p in points]


def error(got: list[tuple[int, ...]], expected: list[tuple[int, ...]]) -> int:
    pairs = zip(got, expected, strict=True)
    return max(abs(a - b) for g, e in pairs for a, b in zip(g, e, strict=True))


def colour_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=color_primaries,color_transfer,color_space,color_range", "-of", "json",
         str(path)], check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    return json.loads(out)["streams"][0]


def info(width=1920, height=1080, **tags) -> MediaInfo:
    return MediaInfo("mov,mp4", 5.0, 1000, "h264", width, height, Fraction(25), Fraction(1),
                     False, None, None, None, **tags)  # fmt: skip


# --- the decision ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "tags", "decision"),
    [
        (1920, 1080, {}, SDR_BT709),  # untagged HD
        (1280, 720, {}, SDR_BT709),
        (720, 1280, {}, SDR_BT709),  # portrait HD
        (720, 576, {}, BT601_TO_BT709),  # untagged SD: PAL, NTSC, small web clips
        (720, 480, {}, BT601_TO_BT709),
        (320, 180, {}, BT601_TO_BT709),
        (576, 1024, {}, BT601_TO_BT709),
        (1920, 1080, {"color_space": "bt709", "color_transfer": "bt709"}, SDR_BT709),
        (720, 576, {"color_space": "bt709", "color_primaries": "bt709"}, SDR_BT709),
        (1920, 1080, {"color_space": "smpte170m"}, BT601_TO_BT709),
        (720, 576, {"color_space": "bt470bg", "color_primaries": "bt470bg"}, BT601_TO_BT709),
        (
            1920,
            1080,
            {"color_transfer": "smpte2084", "color_primaries": "bt2020", "color_space": "bt2020nc"},
            PQ_TO_SDR,
        ),  # fmt: skip
        (
            3840,
            2160,
            {
                "color_transfer": "arib-std-b67",
                "color_primaries": "bt2020",
                "color_space": "bt2020nc",
            },
            HLG_TO_SDR,
        ),  # fmt: skip
        (640, 360, {"color_transfer": "arib-std-b67"}, HLG_TO_SDR),  # HDR before SD
    ],
)
def test_one_decision_per_clip_from_its_probe(width, height, tags, decision):
    assert colour_decision(info(width, height, **tags)) == decision


def test_each_decision_has_its_filters():
    assert colour_filters(SDR_BT709) == []
    chains = {d: ",".join(colour_filters(d)) for d in DECISIONS if d != SDR_BT709}
    assert "tin=smpte2084" in chains[PQ_TO_SDR] and "tonemap=" in chains[PQ_TO_SDR]
    assert "tin=arib-std-b67" in chains[HLG_TO_SDR] and "tonemap=" in chains[HLG_TO_SDR]
    assert "min=170m" in chains[BT601_TO_BT709]
    assert all(chain.endswith("format=yuv420p") for chain in chains.values())
    with pytest.raises(ValueError, match="unknown colour decision"):
        colour_filters("sepia")


def test_probe_reads_the_colour_tags_and_ignores_unknown_ones(tmp_path):
    stream = {"codec_type": "video", "codec_name": "hevc", "width": 1920, "height": 1080,
              "duration": "2.0", "color_transfer": "smpte2084", "color_primaries": "bt2020",
              "color_space": "bt2020nc", "color_range": "unknown"}  # fmt: skip
    probed = parse_probe(tmp_path / "a.mov", {"streams": [stream], "format": {}})
    assert (probed.color_transfer, probed.color_primaries) == ("smpte2084", "bt2020")
    assert (probed.color_space, probed.color_range) == ("bt2020nc", None)
    assert MediaInfo.from_record(probed.to_record()) == probed


def test_a_record_kept_before_the_colour_tags_is_probed_again():
    """A manifest written before the colour tags were probed says nothing of them: an HDR
    clip re-exported from it would be taken for SDR. Its version is older, so the encode
    step probes the archived file again (one ffprobe) instead of trusting it."""
    tagged = info(color_transfer="smpte2084", color_primaries="bt2020", color_space="bt2020nc")
    record = tagged.to_record()
    old = {k: v for k, v in record.items() if not k.startswith("color_")}
    assert MediaInfo.from_record({**old, "version": 1}) is None
    assert MediaInfo.from_record(record) == tagged


def test_the_decision_is_part_of_the_segment_key():
    settings = encode_settings("1080p", "16:9", "high", Fraction(25), threads=2)
    plain = Clip(Path("/c/a.mp4"), 0.0, None, info(), "clip 1", "a" * 64)
    keys = {
        decision: segment_key(replace(plain, info=clip_info), settings, copy=False)
        for decision, clip_info in [
            (SDR_BT709, info()),
            (BT601_TO_BT709, info(color_space="smpte170m")),
            (PQ_TO_SDR, info(color_transfer="smpte2084")),
            (HLG_TO_SDR, info(color_transfer="arib-std-b67")),
        ]
    }
    assert len(set(keys.values())) == 4
    assert keys[SDR_BT709] == f"{'a' * 64}/0.000-end-{settings.cache_key()}"  # no suffix
    for decision in (BT601_TO_BT709, PQ_TO_SDR, HLG_TO_SDR):
        assert keys[decision] == f"{keys[SDR_BT709]}-{decision}"


def test_only_sdr_bt709_clips_are_copied():
    settings = encode_settings("1080p", "16:9", "high", Fraction(25), threads=2)
    ready = replace(info(), pix_fmt="yuv420p", video_bitrate=1_000_000, extradata_hash="x")
    clip = Clip(Path("/c/a.mp4"), 0.0, None, ready, "clip 1", "a" * 64)
    assert can_copy(clip, settings)
    for tags in ({"color_transfer": "arib-std-b67"}, {"color_space": "bt470bg"},
                 {"color_range": "pc"}):  # fmt: skip
        assert not can_copy(replace(clip, info=replace(ready, **tags)), settings), tags


# --- real exports -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("colour")
    return {
        PQ_TO_SDR: make_hdr(directory / "pq.mp4", "smpte2084"),
        BT601_TO_BT709: make_sdr(directory / "sd.mp4", "320x180", "bt601"),
        HLG_TO_SDR: make_hdr(directory / "hlg.mp4", "arib-std-b67"),
        SDR_BT709: make_sdr(directory / "hd.mp4", "1280x720", "bt709"),
    }


def _clips(sources: dict[str, Path]) -> list[Clip]:
    clips = []
    for n, (decision, path) in enumerate(sources.items()):
        probed = probe(path)
        assert colour_decision(probed) == decision  # the sources are what they claim
        clips.append(Clip(path, 0.0, None, probed, f"clip {n + 1}"))
    return clips


def test_a_timeline_of_hdr_sd_and_hd_clips_comes_out_bt709(sources, tmp_path):
    """PQ, SD BT.601, HLG and HD BT.709 clips cut together: every clip's bars right."""
    settings = encode_settings("720p", "16:9", "low", Fraction(FPS), preset="ultrafast")
    output = tmp_path / "out.mp4"
    render_video(_clips(sources), settings, tmp_path / "work", output, RenderOptions(parallel=2))
    assert colour_tags(output) == BT709_TAGS
    errors = {}
    for n, decision in enumerate(sources):
        got = bars_at(output, (n + 0.5) * SECONDS, settings.width, settings.height)
        hdr = decision in (PQ_TO_SDR, HLG_TO_SDR)
        expected = [(HDR_WHITE,) * 3 if hdr else BARS[0], *BARS[1:]]
        errors[decision] = error(got, expected)
        assert errors[decision] <= TOLERANCE, (decision, got)
    print("colour errors of 255:", errors)


@pytest.mark.parametrize("fmt", ["mp4-hevc", "webm"])
def test_every_format_is_tagged_bt709(sources, tmp_path, fmt):
    """The other encoders tag their output too (the SD clip, converted, is enough)."""
    settings = encode_settings("720p", "16:9", "low", Fraction(FPS), format=fmt)
    settings = replace(settings, preset=settings.format.video.speeds[0])  # fastest
    output = tmp_path / f"out.{settings.format.extension}"
    clips = _clips({BT601_TO_BT709: sources[BT601_TO_BT709]})
    render_video(clips, settings, tmp_path / "work", output)
    assert colour_tags(output) == BT709_TAGS
    got = bars_at(output, SECONDS / 2, settings.width, settings.height)
    assert error(got, BARS) <= TOLERANCE, got


def test_a_copied_clip_is_tagged_bt709_too(tmp_path):
    """An untagged HD H.264 clip that is already what the export needs is stream-copied;
    its headers are retagged, its pixels untouched."""
    path = tmp_path / "hd.mp4"
    _ffmpeg(*_bars("1280x720"), "-vf", "format=gbrp,scale=out_color_matrix=bt709:"
            "out_range=tv,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
            "-b:v", "300k", "-f", "mp4", str(path))  # fmt: skip
    settings = encode_settings("720p", "16:9", "low", Fraction(FPS), preset="ultrafast")
    clip = Clip(path, 0.0, None, probe(path), "clip 1", None)
    output = tmp_path / "out.mp4"
    result = render_video([clip, clip], settings, tmp_path / "work", output)
    assert result.stream_copy
    assert colour_tags(output) == BT709_TAGS
    got = bars_at(output, SECONDS * 1.5, settings.width, settings.height)
    assert error(got, BARS) <= TOLERANCE, got
