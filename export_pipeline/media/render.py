"""Render an export in one process: plan its segments, take what a cache already holds,
render the rest side by side with the audio track, join them and describe the result."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import EncodeSettings
from export_pipeline.media.execute import render_parts
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg, Progress, progress_share
from export_pipeline.media.join import join_planned
from export_pipeline.media.plan import (
    Renderable,
    RenderOptions,
    RenderPlan,
    plan_render,
    plan_segments,
)
from export_pipeline.media.probe import probe
from export_pipeline.media.segment import Segment

# Share of the overall progress given to rendering the segments and the audio track; the
# join (a stream copy) gets the rest: about its share of the time (bench_eta: 1.2-1.4 s of a
# 35-50 s encode).
SEGMENTS_SHARE = 0.96


class SegmentCache(Protocol):
    """Where rendered segments are kept between exports, each half under its own name
    (`Segment.video_name`, `Segment.audio_name`: source content, span and the settings
    that change it), so a re-export only renders the clips that changed."""

    def fetch(self, name: str, out: Path) -> bool: ...

    def store(self, name: str, path: Path) -> None: ...


@dataclass
class RenderResult:
    output: Path
    duration_s: float
    size_bytes: int
    frames: int
    segments: int
    settings: EncodeSettings
    reused_segments: int = 0
    stream_copy: bool = False


def _from_cache(
    plan: RenderPlan, cache: SegmentCache | None, audio_track: Path | None
) -> tuple[list[Renderable], list[Segment]]:
    """What is left to render once `cache` gave what it holds (those are `done`): the
    segments whose pictures it lacks, the audio track first unless `audio_track` is that
    file already rendered (it takes longer than one segment); and the segments whose sound
    it lacks."""

    def cached(name: str | None, path: Path) -> bool:
        return bool(cache and name and cache.fetch(name, path))

    pending: list[Renderable] = []
    for segment in plan.segments:
        if cached(segment.video_name, segment.video):
            segment.done = 1.0
        else:
            pending.append(segment)
    if audio_track is not None:
        shutil.copyfile(audio_track, plan.audio.path)
        plan.audio.done = 1.0
        return pending, []
    sounds = [s for s in plan.segments if not cached(s.audio_name, s.audio)]
    return [plan.audio, *pending], sounds


def _render_plan(
    plan: RenderPlan,
    output: Path,
    options: RenderOptions,
    ffmpeg: FFmpeg,
    cache: SegmentCache | None,
    on_progress: Progress | None,
    audio_track: Path | None,
) -> int:
    """Render what `cache` lacks of `plan`, store it there and join it into `output`;
    returns how many segments' pictures came from the cache."""
    pending, sounds = _from_cache(plan, cache, audio_track)
    parts = plan.parts
    total = sum(part.duration for part in parts)

    def report() -> None:
        if on_progress:
            on_progress(SEGMENTS_SHARE * sum(p.done * p.duration for p in parts) / total)

    def finished(segment: Segment) -> None:
        if cache and segment.video_name:
            cache.store(segment.video_name, segment.video)

    report()
    render_parts(
        plan, pending, audio_pending=sounds, parallel=options.parallel, report=report,
        finished=finished, ffmpeg=ffmpeg,
    )  # fmt: skip
    for segment in sounds:
        if cache and segment.audio_name:
            cache.store(segment.audio_name, segment.audio)
    join_planned(
        plan, output, subtitles=options.subtitles, ffmpeg=ffmpeg,
        on_progress=progress_share(on_progress, SEGMENTS_SHARE, 1 - SEGMENTS_SHARE),
    )  # fmt: skip
    return len(plan.segments) - sum(1 for part in pending if part is not plan.audio)


def render_video(
    clips: list[Clip],
    settings: EncodeSettings,
    work_dir: Path,
    output: Path,
    options: RenderOptions = RenderOptions(),  # noqa: B008 - frozen, never changed
    *,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    cache: SegmentCache | None = None,
    on_progress: Progress | None = None,
    audio_track: Path | None = None,
) -> RenderResult:
    """Render `clips` in order into `output`, in this process, with `ffmpeg` (its timeout
    applies per FFmpeg run). Segments (`plan.plan_render`) whose pictures are not in `cache`
    are rendered `options.parallel` at once, the audio track beside them (unless
    `audio_track` is that file, already rendered), from the sound of the segments, cached
    or rendered. `options` says what is burned in, mixed in and added as a soft track.

    Progress: rendering the parts is 96 % of the work, shared by weight (a segment's is its
    length); the join is the last 4 %. Intermediate files live in a scratch directory
    inside `work_dir` that is removed at the end, whether the render succeeded or not.
    """
    if not clips:
        raise ValueError("nothing to render: no clips")
    plan_segments(clips, settings.fps, options.max_segment_s)  # ClipError before any work
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="render-", dir=work_dir))
    try:
        plan = plan_render(clips, settings, scratch, options)
        reused = _render_plan(plan, output, options, ffmpeg, cache, on_progress, audio_track)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = probe(output, ffmpeg)
    return RenderResult(
        output=output,
        duration_s=info.duration,
        size_bytes=output.stat().st_size,
        frames=plan.frames,
        segments=len(plan.segments),
        settings=settings,
        reused_segments=reused,
        stream_copy=plan.copy,
    )
