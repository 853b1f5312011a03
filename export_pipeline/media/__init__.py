"""FFmpeg for exports, one module per step of the pipeline.

`ffmpeg` (the runner object) and `runner` (one process) run commands; `inputs` opens files;
`probe` describes a clip; `encoding` chooses the encoder settings (`system`: the CPUs);
`clip` is a clip and its span; `plan` cuts the timeline into `segment`s (`filters` are their
graphs); `loudness` evens out the clips' sound; `audio` makes the audio track; `execute`
renders parts side by side; `join` copies them into the video; `render` does all of it in
one process. `captions`, `soundtrack`, `poster`, `frame` and `samples` serve them.
"""

from export_pipeline.media.clip import Clip, ClipError, Transition, effective_duration
from export_pipeline.media.encoding import EncodeSettings, encode_settings, frame_count
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.frame import choose_frame_rate, fit_rect
from export_pipeline.media.plan import RenderOptions, RenderPlan, plan_render, plan_segments

# `probe` the function is not re-exported: it would hide the `probe` module, which breaks
# `import export_pipeline.media.probe` lookups and patching. Import it from the module.
from export_pipeline.media.probe import (
    InvalidMedia,
    MediaInfo,
    check_decodable,
    probe_and_check,
)
from export_pipeline.media.render import RenderResult, render_video
from export_pipeline.media.runner import FFmpegError, Limits
from export_pipeline.media.samples import make_sample_clip
from export_pipeline.media.segment import Segment, render_segment

__all__ = [
    "Clip",
    "ClipError",
    "EncodeSettings",
    "FFmpeg",
    "FFmpegError",
    "InvalidMedia",
    "Limits",
    "MediaInfo",
    "RenderOptions",
    "RenderPlan",
    "RenderResult",
    "Segment",
    "Transition",
    "check_decodable",
    "choose_frame_rate",
    "effective_duration",
    "encode_settings",
    "fit_rect",
    "frame_count",
    "make_sample_clip",
    "plan_render",
    "plan_segments",
    "probe_and_check",
    "render_segment",
    "render_video",
]
