from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dagster import ConfigurableResource

from export_pipeline.media.commands import (
    DEFAULT_LOUDNESS_LUFS,
    DEFAULT_PRESET,
    MAX_INPUT_PIXELS,
    MAX_INPUT_SIDE,
)
from export_pipeline.media.runner import Limits


class MediaTools(ConfigurableResource):
    """Where FFmpeg is and how it encodes; where steps keep their temporary files."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    x264_preset: str = DEFAULT_PRESET
    max_fps: int = 60
    segment_workers: int = 0  # segments encoded at once; 0: 2 with 2 CPUs or more, else 1
    max_segment_s: float = 10.0  # a longer clip is cut into chunks of at most this: 0, never
    segments_per_step: int = 1  # segments a segment step renders; 0: all of them
    # A segment step reads an archived clip larger than this (MB) over HTTP from S3,
    # seeking to its span, instead of downloading it whole; 0: always download.
    stream_sources_mb: float = 256
    loudness_lufs: float = DEFAULT_LOUDNESS_LUFS  # where audio_normalize brings every clip
    work_dir: str | None = None
    ffmpeg_timeout_s: float = 3600.0  # per FFmpeg command: a hung encoder fails, then retries
    # Per FFmpeg/ffprobe process: data segment (MB) and CPU seconds; 0: no limit.
    memory_mb: int = 3072
    cpu_s: int = 7200
    # The largest clip frame accepted: pixels a side, and pixels in all (8192x4320).
    max_input_side: int = MAX_INPUT_SIDE
    max_input_pixels: int = MAX_INPUT_PIXELS

    def limits(self) -> Limits:
        """What one clip and each FFmpeg process on it may cost (see `Limits`)."""
        return Limits(
            memory_mb=self.memory_mb,
            cpu_s=self.cpu_s,
            max_side=self.max_input_side,
            max_pixels=self.max_input_pixels,
        )

    def temp_dir(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A private scratch directory, removed when the step ends (even on failure or
        termination). Leftovers of an earlier attempt of the same step of the same
        partition, whose worker was killed before it could clean up, are removed first:
        attempts of one step never run at the same time."""
        base = Path(self.work_dir) if self.work_dir else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        for stale in base.glob(f"{prefix}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir=base)
