"""`mp4`: H.264 (libx264, yuv420p) + AAC in MP4 with `+faststart`, what every player opens.
Its AAC track, MP4 container and SRT-as-mov_text captions are shared by `mp4_hevc`."""

from __future__ import annotations

from export_pipeline.domain.formats.profile import (
    AudioEncoder,
    Container,
    EncoderParams,
    OutputFormat,
    SoftSubtitles,
    VideoEncoder,
    threads,
)

X264_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
# The default x264 preset, chosen over the benchmark corpus (README, Performance).
DEFAULT_PRESET = "veryfast"

CONTAINER = Container(muxer="mp4", extension="mp4", demuxers="mov,mp4", content_type="video/mp4")
# The index (moov) before the media, so a player starts before the whole file has arrived.
FASTSTART = ("-movflags", "+faststart")
# AAC, in an MP4 audio file (.m4a) between the audio step and the join.
AAC = AudioEncoder(
    codec="aac",
    encoder="aac",
    bitrate=192_000,
    track=Container(muxer="mp4", extension="m4a", demuxers="mov,mp4,m4a", content_type="audio/m4a"),
)
# Soft captions: an SRT file, stored as MP4's own text track.
MOV_TEXT = SoftSubtitles(document="srt", demuxer="srt", extension="srt", codec="mov_text")
# A copied H.264 stream's headers say BT.709 (code 1), limited range, as encoded ones do.
H264_BT709 = (
    "-bsf:v",
    "h264_metadata=video_full_range_flag=0:colour_primaries=1:transfer_characteristics=1"
    ":matrix_coefficients=1",
)


def x264_args(p: EncoderParams) -> list[str]:
    """libx264: CRF under a VBV cap (maxrate, bufsize, the buffer starting `vbv_init` full)."""
    return [
        "-c:v", "libx264", *threads("-threads", p.threads), "-preset", p.preset,
        "-crf", str(p.crf), "-maxrate", str(p.maxrate), "-bufsize", str(p.bufsize),
        "-x264-params", f"vbv-init={p.vbv_init}", "-profile:v", p.profile, "-pix_fmt", "yuv420p",
    ]  # fmt: skip


PROFILE = OutputFormat(
    name="mp4",
    file=CONTAINER,
    muxer_args=FASTSTART,
    segments=CONTAINER,
    video=VideoEncoder(
        codec="h264",
        crf={"low": 28, "medium": 23, "high": 20},
        speeds=X264_PRESETS,
        default_speed=DEFAULT_PRESET,
        # A second retry falls back to profile main.
        profiles=("high", "high", "main"),
        args=x264_args,
        takes_preset=True,
        retag_copy=H264_BT709,
        # Above 30 fps two presets slower (`veryfast` -> `fast`): on 60 fps pans (bench_corpus
        # `motion`) SSIM -0.0072 at veryfast, -0.0058 at faster, -0.0035 at fast against the
        # reference, at the same size and 1.9x veryfast's CPU.
        high_rate_slower=2,
    ),
    audio=AAC,
    subtitles=MOV_TEXT,
    # A clip that already is H.264 yuv420p at the target size and rate goes in untouched.
    copies_clips=True,
)
