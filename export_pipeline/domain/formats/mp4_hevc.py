"""`mp4-hevc`: H.265 (libx265, Main profile, tagged `hvc1`, which Safari and QuickTime need)
+ AAC in MP4 with `+faststart`."""

from __future__ import annotations

from export_pipeline.domain.formats import mp4
from export_pipeline.domain.formats.profile import EncoderParams, OutputFormat, VideoEncoder

HVC1 = ("-tag:v", "hvc1")


def x265_args(p: EncoderParams) -> list[str]:
    """libx265: the same VBV cap as x264 through x265's own parameters (kbit/s), its thread
    pool sized like x264's threads."""
    params = (
        f"vbv-maxrate={p.maxrate // 1000}:vbv-bufsize={p.bufsize // 1000}:"
        f"vbv-init={p.vbv_init}:log-level=error" + (f":pools={p.threads}" if p.threads > 0 else "")
    )
    return [
        "-c:v", "libx265", "-preset", p.preset, "-crf", str(p.crf), "-x265-params", params,
        "-profile:v", p.profile, *HVC1, "-pix_fmt", "yuv420p",
    ]  # fmt: skip


PROFILE = OutputFormat(
    name="mp4-hevc",
    file=mp4.CONTAINER,
    muxer_args=(*HVC1, *mp4.FASTSTART),
    segments=mp4.CONTAINER,
    video=VideoEncoder(
        codec="hevc",
        # Each tier reaches the H.264 output's SSIM with a smaller file (bench_formats).
        crf={"low": 31, "medium": 25, "high": 22},
        speeds=mp4.X264_PRESETS,  # x265 takes x264's preset names
        default_speed="superfast",
        profiles=("main",),
        args=x265_args,
        cost=2.0,  # bench_prior
    ),
    audio=mp4.AAC,
    subtitles=mp4.MOV_TEXT,
)
