"""FFmpeg for exports: layout maths, command building, probing, running and rendering."""

from export_pipeline.domain.target import (
    ASPECT_RATIOS,
    QUALITIES,
    RESOLUTIONS,
    frame_size,
    video_bitrate_cap,
)
from export_pipeline.media.commands import (
    EncodeSettings,
    SegmentJob,
    concat_argv,
    concat_list,
    encode_settings,
    frame_count,
    probe_argv,
    segment_argv,
)
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.frame import choose_frame_rate, fit_rect

# `probe` the function is not re-exported: it would hide the `probe` module, which breaks
# `import export_pipeline.media.probe` lookups and patching. Import it from the module.
from export_pipeline.media.probe import (
    InvalidMedia,
    MediaInfo,
    check_decodable,
    probe_and_check,
)
from export_pipeline.media.render import (
    ClipError,
    RenderInput,
    RenderResult,
    effective_duration,
    join_segments,
    render_segment,
    render_video,
)
from export_pipeline.media.runner import FFmpegError, run_ffmpeg
from export_pipeline.media.samples import make_sample_clip

__all__ = [
    "ASPECT_RATIOS",
    "QUALITIES",
    "RESOLUTIONS",
    "ClipError",
    "EncodeSettings",
    "FFmpeg",
    "FFmpegError",
    "InvalidMedia",
    "MediaInfo",
    "RenderInput",
    "RenderResult",
    "SegmentJob",
    "check_decodable",
    "choose_frame_rate",
    "concat_argv",
    "concat_list",
    "effective_duration",
    "encode_settings",
    "fit_rect",
    "frame_count",
    "frame_size",
    "join_segments",
    "make_sample_clip",
    "probe_and_check",
    "probe_argv",
    "render_segment",
    "render_video",
    "run_ffmpeg",
    "segment_argv",
    "video_bitrate_cap",
]
