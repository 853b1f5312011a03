"""`webm`: VP9 (libvpx-vp9, row multithreading) + Opus in WebM with its index (cues) at the
front, the WebM way of playing while downloading; soft captions as WebVTT."""

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

CONTAINER = Container(
    muxer="webm", extension="webm", demuxers="matroska,webm", content_type="video/webm"
)


def vp9_args(p: EncoderParams) -> list[str]:
    """libvpx-vp9 in constrained quality (CRF, the bitrate cap as the average ceiling), the
    `good` deadline at `cpu-used` = preset, row multithreading and tile columns (log2, 256 px
    each) so that every core works on one frame."""
    tiles = max(0, min(4, (p.width // 256).bit_length() - 1))
    return [
        "-c:v", "libvpx-vp9", *threads("-threads", p.threads), "-deadline", "good",
        "-cpu-used", p.preset, "-row-mt", "1", "-tile-columns", str(tiles), "-crf", str(p.crf),
        "-b:v", str(p.maxrate), "-pix_fmt", "yuv420p",
    ]  # fmt: skip


PROFILE = OutputFormat(
    name="webm",
    file=CONTAINER,
    muxer_args=("-cues_to_front", "1"),
    segments=CONTAINER,
    video=VideoEncoder(
        codec="vp9",
        # Each tier reaches the H.264 output's SSIM with a smaller file (bench_formats).
        crf={"low": 46, "medium": 40, "high": 36},
        speeds=("8", "7", "6", "5", "4", "3", "2", "1", "0"),  # cpu-used, fastest first
        default_speed="6",
        profiles=("main",),
        args=vp9_args,
        cost=3.5,  # bench_prior
    ),
    # Opus needs less than AAC for the same sound.
    audio=AudioEncoder(
        codec="opus",
        encoder="libopus",
        bitrate=128_000,
        track=Container(
            muxer="webm", extension="webm", demuxers="matroska,webm", content_type="audio/webm"
        ),
    ),
    subtitles=SoftSubtitles(document="vtt", demuxer="webvtt", extension="vtt", codec="webvtt"),
)
