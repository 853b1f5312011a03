"""Rendering parts of a plan side by side in one process: segments' pictures and the audio
track on a small thread pool, each FFmpeg run stoppable, progress and completions reported
on the calling thread, and the first error stopping the others."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace

from export_pipeline.media.audio import render_audio
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg, Progress
from export_pipeline.media.plan import AudioTrack, Renderable, RenderPlan
from export_pipeline.media.segment import Segment, render_pictures
from export_pipeline.media.system import available_cpus

# How often progress is reported while parts are being rendered.
PROGRESS_POLL_S = 0.5


def segment_workers(requested: int = 0) -> int:
    """How many parts to render at once: `requested`, or by default 2 when the worker has
    2 CPUs or more (measured on 2 CPUs: two encodes side by side keep the cores busy while
    each starts and ends, where one alone leaves them idle), else 1."""
    return requested if requested > 0 else min(2, available_cpus())


def side_by_side(
    pending: list[Renderable],
    render: Callable[[Renderable, Progress, threading.Event], object],
    workers: int,
    report: Callable[[], None],
    finished: Callable[[Renderable], None],
) -> None:
    """Render `pending` with up to `workers` at once. `render(part, on_progress, stop)`
    runs on a pool thread; `report` (progress) and `finished` (the cache) run here, on the
    calling thread, as do the errors: the first one raised stops the other renders (their
    FFmpeg is killed) before it propagates, and so does anything that interrupts this thread
    (a canceled run's DagsterExecutionInterruptedError)."""
    stop = threading.Event()

    def work(part: Renderable) -> object:
        def on_progress(fraction: float) -> None:
            part.done = fraction

        return render(part, on_progress, stop)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment")
    try:
        futures = {pool.submit(work, part): part for part in pending}
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=PROGRESS_POLL_S, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: futures[f].index):
                future.result()  # raises the render's error
                finished(futures[future])
            report()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def render_parts(
    plan: RenderPlan,
    parts: list[Renderable],
    *,
    audio_pending: list[Segment] | None = None,
    parallel: int = 0,
    report: Callable[[], None] | None = None,
    finished: Callable[[Segment], None] | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
) -> None:
    """Render `parts` of `plan`: segments' pictures, and the audio track if it is among them
    (with the sound of the `audio_pending` segments: `audio.render_audio`), `parallel` at
    once (0: `segment_workers()`), sharing the encoder threads one would have. Each part's
    `done` follows its progress; `report` is called as it moves and `finished(segment)` once
    a segment's pictures are complete, both on this thread. The first error (or an interrupt
    of this thread) stops the other FFmpeg."""
    if not parts:
        return
    workers = min(segment_workers(parallel), len(parts))
    settings = plan.settings
    if workers > 1 and settings.threads > 0:
        settings = replace(settings, threads=math.ceil(settings.threads / workers))

    def render(part: Renderable, progress: Progress, stop: threading.Event) -> object:
        stoppable = ffmpeg.stopped_by(stop)
        if isinstance(part, AudioTrack):
            pending = audio_pending or []
            return render_audio(plan, pending, ffmpeg=stoppable, on_progress=progress)
        return render_pictures(
            part, settings, copy=plan.copy, ffmpeg=stoppable, on_progress=progress
        )

    def done(part: Renderable) -> None:
        part.done = 1.0
        if finished and isinstance(part, Segment):
            finished(part)

    side_by_side(parts, render, workers, report or (lambda: None), done)
