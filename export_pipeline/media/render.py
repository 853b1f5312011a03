"""Render an export: one segment per clip, then one join by stream copy.

`render_video` does the whole thing in a private scratch directory. `render_segment` and
`join_segments` are the two halves, for a pipeline that encodes (and caches) clips as
separate steps: every segment of one join must be made with the same EncodeSettings.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from export_pipeline.media.captions import (
    CaptionStyle,
    Cue,
    ass_document,
    cues_in_span,
    srt_document,
    vtt_document,
)
from export_pipeline.media.commands import (
    TRANSITIONS,
    EncodeSettings,
    Loudness,
    SegmentJob,
    TransitionOut,
    audio_sample_count,
    available_cpus,
    concat_argv,
    concat_list,
    copy_segment_argv,
    frame_count,
    loudness_argv,
    loudness_gain,
    parse_loudness,
    segment_argv,
)
from export_pipeline.media.probe import MediaInfo, probe
from export_pipeline.media.runner import (
    DEFAULT_LIMITS,
    FFmpegError,
    Limits,
    capture,
    run_ffmpeg,
)
from export_pipeline.media.soundtrack import Soundtrack, mix_filter, mix_inputs

Progress = Callable[[float], None]

# Share of the overall progress given to encoding the segments; the join (a stream copy)
# gets the rest: about its share of the time (bench_eta: 1.2-1.4 s of a 35-50 s encode).
SEGMENTS_SHARE = 0.96
# Measurements of a limited clip's loudness after its correction (see `normalized`).
LIMITED_PASSES = 2
# How often progress is reported while segments are being encoded.
PROGRESS_POLL_S = 0.5


@dataclass(frozen=True)
class RenderInput:
    """One clip of an export, as probed; `label` names it in errors ("clip 3 (scene 7)")."""

    path: Path
    trim_start: float
    duration: float | None
    info: MediaInfo
    label: str
    content_hash: str | None = None  # of the source file; enables the segment cache
    # How the clip before leads into this one (None: a cut).
    transition: Transition | None = None


@dataclass(frozen=True)
class Transition:
    """A transition into a clip: `crossfade` (the pictures blend) or `fade` (through black)
    over `duration` seconds, while the sound crossfades. The two clips overlap by that much,
    so each transition shortens the video by its duration."""

    kind: str  # commands.XFADE
    duration: float


@dataclass(frozen=True)
class Music:
    """A soundtrack for the join: the file, how it plays, its length (None: unknown)."""

    path: Path
    track: Soundtrack
    duration_s: float | None = None


@dataclass(frozen=True)
class BurnIn:
    """Captions to draw into the pictures: cues on the final timeline, and their style."""

    cues: tuple[Cue, ...]
    style: CaptionStyle


class SegmentCache(Protocol):
    """Where rendered segments are kept between exports (keyed by source content, trim and
    encoder settings), so a re-export only renders the clips that changed."""

    def fetch(self, key: str, video_out: Path, audio_out: Path) -> bool: ...

    def store(self, key: str, video_out: Path, audio_out: Path) -> None: ...


class ClipError(ValueError):
    """A clip spec that cannot be rendered; the message starts with the clip's label."""

    def __init__(self, label: str, problem: str) -> None:
        self.label = label
        self.problem = problem
        super().__init__(f"{label}: {problem}")


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


def _secs(value: float) -> str:
    """9 -> "9.0", 2.125 -> "2.125": readable seconds for messages."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def effective_duration(inp: RenderInput) -> float:
    """Seconds of the clip used: the requested duration, cut at the end of the clip.

    Raises ClipError when the trim or the duration make no sense for this clip.
    """
    length = inp.info.duration
    if not math.isfinite(inp.trim_start) or inp.trim_start < 0:
        raise ClipError(inp.label, f"trim_start {inp.trim_start} s must be a number >= 0")
    if inp.trim_start >= length:
        raise ClipError(
            inp.label,
            f"trim_start {_secs(inp.trim_start)} s is beyond the clip's length {_secs(length)} s",
        )
    available = length - inp.trim_start
    if inp.duration is None:
        return available
    if not math.isfinite(inp.duration) or inp.duration <= 0:
        raise ClipError(inp.label, f"duration {inp.duration} s must be a number > 0")
    return min(inp.duration, available)


def segment_job(inp: RenderInput, video_out: Path, audio_out: Path) -> SegmentJob:
    """The encoding job for one clip (raises ClipError for an impossible trim)."""
    return SegmentJob(
        source=inp.path,
        trim_start=inp.trim_start,
        duration=effective_duration(inp),
        has_audio=inp.info.has_audio,
        video_out=video_out,
        audio_out=audio_out,
        width=inp.info.width,
        height=inp.info.height,
        sar=inp.info.sar,
        interlaced=inp.info.interlaced,
        indexed=inp.info.indexed,
    )


def can_copy(inp: RenderInput, settings: EncodeSettings) -> bool:
    """Whether the clip's video can go into the export untouched: H.264 yuv420p with square
    pixels at the target size and rate, within the quality's bitrate cap, used whole."""
    info = inp.info
    whole = inp.trim_start == 0 and (
        inp.duration is None or inp.duration >= info.duration - 1 / float(settings.fps)
    )
    return (
        whole
        and settings.codec == "h264"
        and info.video_codec == "h264"
        and info.pix_fmt == "yuv420p"
        and (info.width, info.height) == (settings.width, settings.height)
        and info.sar == 1
        and info.fps == settings.fps
        and info.video_bitrate is not None
        and info.video_bitrate <= settings.maxrate * 1.1
        and info.extradata_hash is not None
    )


def copy_path(inputs: list[RenderInput], settings: EncodeSettings) -> bool:
    """Stream copy is only safe when every clip qualifies and all share one set of H.264
    headers: the joined file carries the first clip's headers for all of them."""
    return all(can_copy(i, settings) for i in inputs) and (
        len({i.info.extradata_hash for i in inputs}) == 1
    )


def segment_key(inp: RenderInput, settings: EncodeSettings, copy: bool) -> str | None:
    """Where the segment of `inp` is cached, from normalized values: the span actually used
    (a duration past the clip's end is the same segment as "to the end"), so keys stay short
    and equal requests share one segment."""
    if not inp.content_hash:
        return None
    used = effective_duration(inp)  # bounded by the clip's own length
    to_end = inp.duration is None or inp.trim_start + inp.duration >= inp.info.duration
    length = "end" if to_end else f"{used:.3f}"
    mode = "copy" if copy else settings.cache_key()
    return f"{inp.content_hash}/{inp.trim_start:.3f}-{length}-{mode}"


def measure_loudness(
    job: SegmentJob,
    label: str,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Loudness:
    """The integrated loudness and true peak of the clip's span (its audio alone)."""
    argv = loudness_argv(job, ffmpeg)
    done = capture(argv, timeout_s=timeout_s or 600.0, limits=limits)
    if done.returncode != 0:
        error = FFmpegError(
            argv, done.returncode, done.stderr[-2000:], over_limit=bool(done.over_limit)
        )
        error.add_note(f"while measuring the loudness of {label}")
        raise error
    return parse_loudness(done.stderr)


def normalized(
    job: SegmentJob,
    target: float,
    label: str,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> SegmentJob:
    """`job` with the gain that brings its clip to `target` LUFS. Where the limiter has to
    hold the peaks, it also takes some loudness away (2 LU on speech-like bursts): the
    corrected audio is measured again and the gain raised by what is missing, up to
    LIMITED_PASSES times (each pass decodes the clip's audio only)."""
    measured = measure_loudness(job, label, ffmpeg, timeout_s, limits)
    gain, limiter = loudness_gain(measured, target)
    job = replace(job, gain_db=gain, limiter=limiter)
    for _ in range(LIMITED_PASSES if limiter else 0):
        missing = target - measure_loudness(job, label, ffmpeg, timeout_s, limits).integrated
        if abs(missing) < 0.3:
            break
        job = replace(job, gain_db=round(job.gain_db + missing, 2))
    return job


def transition_out(
    kind: str, into: RenderInput, level: tuple[float, bool] | None = None
) -> TransitionOut:
    """A `kind` transition into `into` (the next clip's first frames, as long as the
    transition), corrected for loudness by `level` (gain dB, limiter) as its clip is."""
    head = segment_job(into, into.path, into.path)  # its outputs are unused: an input
    if level is not None:
        head = replace(head, gain_db=level[0], limiter=level[1])
    return TransitionOut(kind, head)


def render_segment(
    inp: RenderInput,
    settings: EncodeSettings,
    video_out: Path,
    audio_out: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    copy: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    stop: threading.Event | None = None,
    level: tuple[float, bool] | None = None,
    captions: Path | None = None,
    out: TransitionOut | None = None,
) -> int:
    """Encode one clip into its video (.mp4, or .webm for VP9) and audio (.wav) segments;
    return the frames.
    With `copy` (see `can_copy`) the video is stream-copied instead of encoded. Setting
    `stop` kills FFmpeg and raises runner.Stopped. `level` is the clip's loudness correction
    (gain dB, limiter) when known; else, with a target in `settings`, the span is measured.
    `captions` (an ASS file, times from the segment's start) are burned in. With `out`
    (`transition_out`) the segment ends in the transition into the next clip.

    An FFmpegError raised here carries a note naming the clip.
    """
    job = replace(segment_job(inp, video_out, audio_out), captions=captions)
    if level is not None:
        job = replace(job, gain_db=level[0], limiter=level[1])
    elif settings.loudness is not None and job.has_audio:
        job = normalized(job, settings.loudness, inp.label, ffmpeg, timeout_s, limits)
    frames = frame_count(job.duration, settings.fps)
    argv = (
        copy_segment_argv(job, settings, frames, ffmpeg)
        if copy
        else segment_argv(job, settings, ffmpeg, out)
    )
    try:
        written = run_ffmpeg(
            argv,
            duration_s=job.duration,
            on_progress=on_progress,
            timeout_s=timeout_s,
            limits=limits,
            stop=stop,
        )
    except FFmpegError as error:
        error.add_note(f"while encoding {inp.label}")
        raise
    if written == 0:  # FFmpeg can read nothing from a damaged file and still exit 0
        raise ClipError(inp.label, "no video could be decoded from the file; upload it again")
    return frames


def join_segments(
    video_segments: list[Path],
    audio_segments: list[Path],
    output: Path,
    settings: EncodeSettings,
    *,
    duration_s: float | None = None,
    on_progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    music: Music | None = None,
    subtitles: tuple[Cue, ...] | None = None,
) -> None:
    """Concatenate segments (in order) into `output`, which appears only when complete.

    The concat lists are written next to the segments (each kind in one directory) and
    removed afterwards; `duration_s` is the expected total, for progress (and the length
    of the `music`, mixed under the clips' audio). `subtitles` become a soft caption track.
    """
    if len(video_segments) != len(audio_segments):
        raise ValueError(
            f"{len(video_segments)} video segments but {len(audio_segments)} audio segments"
        )
    lists: list[Path] = []
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        for segments, kind in ((video_segments, "video"), (audio_segments, "audio")):
            text = concat_list(segments)
            with tempfile.NamedTemporaryFile(
                "w", dir=segments[0].parent, prefix=f"{kind}-", suffix=".ffconcat", delete=False
            ) as handle:
                lists.append(Path(handle.name))
                handle.write(text)
        output.parent.mkdir(parents=True, exist_ok=True)
        mix = None
        if music is not None:
            samples = audio_sample_count(frame_count(duration_s or 0.0, settings.fps), settings)
            mix = (
                mix_inputs(music.path, music.track.loop),
                mix_filter("1:a:0", "2:a:0", samples, settings.audio_rate, music.track,
                           music.duration_s),
            )  # fmt: skip
        track = None
        if subtitles:
            webm = settings.container == "webm"
            track = video_segments[0].parent / ("captions.vtt" if webm else "captions.srt")
            text = vtt_document(list(subtitles)) if webm else srt_document(list(subtitles))
            track.write_text(text, encoding="utf-8")
            lists.append(track)
        run_ffmpeg(
            concat_argv(lists[0], lists[1], partial, settings, ffmpeg, music=mix, subtitles=track),
            duration_s=duration_s,
            on_progress=on_progress,
            timeout_s=timeout_s,
            limits=limits,
        )
        os.replace(partial, output)
    finally:
        for path in [*lists, partial]:
            path.unlink(missing_ok=True)


def segment_workers(requested: int = 0) -> int:
    """How many segments to encode at once: `requested`, or by default 2 when the worker has
    2 CPUs or more (measured on 2 CPUs: two encodes side by side keep the cores busy while
    each starts and ends, where one alone leaves them idle), else 1."""
    return requested if requested > 0 else min(2, available_cpus())


@dataclass
class Segment:
    """One segment of a render: a span of one clip (all of it, or a chunk of a long one),
    ending in the transition into the next clip's first frames `b` when there is one; where
    it goes, where it starts on the timeline, its share of the progress, its cache key
    (None: not cacheable, the clip's content hash is unknown)."""

    index: int
    inp: RenderInput
    duration: float
    video: Path
    audio: Path
    key: str | None
    done: float = 0.0  # fraction encoded, written by the thread encoding it
    b: RenderInput | None = None
    kind: str = "cut"  # of the transition at its end
    clip: int = 0  # which clip of the render `inp` is a span of (0-based)
    frames: int = 0
    offset_s: float = 0.0
    captions: Path | None = None

    @property
    def label(self) -> str:
        if self.b is None:
            return self.inp.label
        return f"{self.inp.label} and the {self.kind} into {self.b.label}"


def _span(inp: RenderInput, start: int, frames: int, fps: Fraction) -> RenderInput:
    """`frames` frames of `inp`'s span from its frame `start`, as an input of its own."""
    return replace(
        inp, trim_start=inp.trim_start + float(start / fps), duration=float(frames / fps)
    )


@dataclass(frozen=True)
class Part:
    """One segment of the timeline, planned: `span` of clip number `clip` (0-based), and,
    with `b` (the next clip's first frames), the transition from the end of `span` into it."""

    span: RenderInput
    clip: int
    b: RenderInput | None = None
    kind: str = "cut"


def plan_segments(
    inputs: list[RenderInput], fps: Fraction, max_segment_s: float | None = None
) -> list[Part]:
    """The timeline as segments, in order: one per clip, or per chunk of a clip longer than
    `max_segment_s` (its span cut evenly on the output frame grid into the fewest chunks of
    at most that length, so one long clip spreads over many workers too). A transition of
    d seconds overlaps the two clips by d (rounded to whole frames), so the video is d
    shorter than its clips: the first clip's (last) segment ends blending into the next
    clip's first d, and the next clip's segment starts after them. Each segment is rendered
    on its own (no segment needs another's frames), and a short clip without transitions is
    one segment, exactly as it was before transitions and chunks existed (same key).
    Raises ClipError when a clip's transitions leave none of it to play alone."""
    frames = [frame_count(effective_duration(inp), fps) for inp in inputs]
    overlap = [0]
    for inp in inputs[1:]:
        fades = inp.transition is not None and inp.transition.kind in TRANSITIONS
        overlap.append(frame_count(inp.transition.duration, fps) if fades else 0)
    overlap.append(0)
    longest = frame_count(max_segment_s, fps) if max_segment_s and max_segment_s > 0 else 0
    parts: list[Part] = []
    for n, inp in enumerate(inputs):
        head, tail = overlap[n], overlap[n + 1]
        alone = frames[n] - head - tail
        if alone < 1:
            raise ClipError(
                inp.label,
                f"its transitions ({_secs(float((head + tail) / fps))} s) take all of its "
                f"{_secs(float(frames[n] / fps))} s: shorten them or the clip",
            )
        own = frames[n] - head  # the frames this clip's segments cover
        chunks = max(1, -(-own // longest)) if longest else 1
        while chunks > 1 and own // chunks <= tail:  # the last chunk holds the transition
            chunks -= 1
        after = inputs[n + 1] if tail else None
        start = head
        for k in range(chunks):
            length = own // chunks + (1 if k < own % chunks else 0)
            whole = chunks == 1 and not head
            span = inp if whole else _span(inp, start, length, fps)
            if after is not None and k == chunks - 1:
                parts.append(Part(span, n, _span(after, 0, tail, fps), after.transition.kind))
            else:
                parts.append(Part(span, n))
            start += length
    return parts


def _with_transition(key: str | None, b_key: str | None, kind: str) -> str | None:
    """The cache key of a segment ending in a transition: its own span's key, the kind, and
    the key of the next clip's frames it blends into (a change to either re-renders it)."""
    if not key or not b_key:
        return None
    digest = hashlib.sha256(f"{b_key}|{kind}".encode()).hexdigest()[:16]
    return f"{key}-{kind}-{digest}"


def _encode_all(
    pending: list[Segment],
    render: Callable[[Segment, Progress, threading.Event], int],
    workers: int,
    report: Callable[[], None],
    finished: Callable[[Segment], None],
) -> None:
    """Encode `pending` with up to `workers` at once. `render(segment, on_progress, stop)`
    runs on a pool thread; `report` (progress) and `finished` (the cache) run here, on the
    calling thread, as do the errors: the first one raised stops the other encodes (their
    FFmpeg is killed) before it propagates, and so does anything that interrupts this thread
    (a canceled run's DagsterExecutionInterruptedError)."""
    stop = threading.Event()

    def work(segment: Segment) -> int:
        def on_progress(fraction: float) -> None:
            segment.done = fraction

        return render(segment, on_progress, stop)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment")
    try:
        futures = {pool.submit(work, segment): segment for segment in pending}
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=PROGRESS_POLL_S, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: futures[f].index):
                future.result()  # raises the encode's error
                finished(futures[future])
            report()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _share(on_progress: Progress | None, start: float, span: float) -> Progress | None:
    if on_progress is None:
        return None
    return lambda fraction: on_progress(min(1.0, start + span * fraction))


@dataclass
class RenderPlan:
    """An export's timeline as segments (`plan_segments`), each with its file names in a
    scratch directory, its place on the timeline and its cache key: what `render_video`
    renders in one process, and what the fan-out (`encode.assets`) spreads over steps,
    each step planning the same segments from the same inputs."""

    inputs: list[RenderInput]
    settings: EncodeSettings
    segments: list[Segment]
    copy: bool  # every clip's video goes in untouched (`copy_path`)

    @property
    def frames(self) -> int:
        return sum(segment.frames for segment in self.segments)


def plan_render(
    inputs: list[RenderInput],
    settings: EncodeSettings,
    scratch: Path,
    *,
    captions: BurnIn | None = None,
    max_segment_s: float | None = None,
) -> RenderPlan:
    """Plan the render of `inputs`: the segments (raises ClipError for a clip that cannot
    be rendered), their files in `scratch`, and the captions to burn into each (written
    there, and part of the segment's key)."""
    if not inputs:
        raise ValueError("nothing to render: no clips")
    parts = plan_segments(inputs, settings.fps, max_segment_s)
    transitions = any(part.b is not None for part in parts)
    copy = not transitions and not captions and copy_path(inputs, settings)
    segments: list[Segment] = []
    offset = 0
    for index, part in enumerate(parts):
        inp, b, kind = part.span, part.b, part.kind
        frames = frame_count(effective_duration(inp), settings.fps)
        key = segment_key(inp, settings, copy)
        if b is not None:
            key = _with_transition(key, segment_key(b, settings, copy), kind)
        segment = Segment(
            index, inp, float(frames / settings.fps),
            scratch / f"segment-{index:04d}.{settings.container}",
            scratch / f"segment-{index:04d}.wav",
            key, b=b, kind=kind, clip=part.clip, frames=frames,
            offset_s=float(offset / settings.fps),
        )  # fmt: skip
        if captions:
            _attach_captions(segment, captions, settings, scratch)
        segments.append(segment)
        offset += frames
    return RenderPlan(inputs, settings, segments, copy)


def render_planned(
    plan: RenderPlan,
    segment: Segment,
    levels: dict[int, tuple[float, bool]],
    *,
    settings: EncodeSettings | None = None,
    on_progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    stop: threading.Event | None = None,
) -> int:
    """Render one segment of `plan` into its files (`settings`: the plan's, or the same
    with fewer threads when segments are rendered side by side); returns its frames.
    `levels` are the clips' loudness corrections (`loudness_levels`)."""
    out = None
    if segment.b is not None:
        out = transition_out(segment.kind, segment.b, levels.get(segment.clip + 1))
    try:
        return render_segment(
            segment.inp, settings or plan.settings, segment.video, segment.audio,
            on_progress=on_progress, ffmpeg=ffmpeg, timeout_s=timeout_s, copy=plan.copy,
            limits=limits, stop=stop, level=levels.get(segment.clip),
            captions=segment.captions, out=out,
        )  # fmt: skip
    except FFmpegError as error:
        if segment.b is not None:
            error.add_note(f"with the {segment.kind} into {segment.b.label}")
        raise


def join_planned(
    plan: RenderPlan,
    output: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    music: Music | None = None,
    subtitles: tuple[Cue, ...] | None = None,
) -> None:
    """Join the plan's rendered segments (all in their files) into `output`."""
    join_segments(
        [segment.video for segment in plan.segments],
        [segment.audio for segment in plan.segments],
        output,
        plan.settings,
        duration_s=plan.frames / plan.settings.fps,
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        timeout_s=timeout_s,
        limits=limits,
        music=music,
        subtitles=subtitles,
    )


def render_segments(
    plan: RenderPlan,
    segments: list[Segment],
    levels: dict[int, tuple[float, bool]],
    *,
    parallel: int = 0,
    report: Callable[[], None] | None = None,
    finished: Callable[[Segment], None] | None = None,
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Render `segments` of `plan`, `parallel` at once (0: `segment_workers()`), sharing the
    encoder threads one would have. Each segment's `done` follows its progress; `report`
    is called as it moves and `finished(segment)` once a segment is complete, both on this
    thread. The first error (or an interrupt of this thread) stops the other FFmpeg."""
    if not segments:
        return
    workers = min(segment_workers(parallel), len(segments))
    settings = plan.settings
    if workers > 1 and settings.threads > 0:
        settings = replace(settings, threads=math.ceil(settings.threads / workers))

    def render(segment: Segment, progress: Progress, stop: threading.Event) -> int:
        return render_planned(
            plan, segment, levels, settings=settings, on_progress=progress, ffmpeg=ffmpeg,
            timeout_s=timeout_s, limits=limits, stop=stop,
        )  # fmt: skip

    def done(segment: Segment) -> None:
        segment.done = 1.0
        if finished:
            finished(segment)

    _encode_all(segments, render, workers, report or (lambda: None), done)


def render_video(
    inputs: list[RenderInput],
    settings: EncodeSettings,
    work_dir: Path,
    output: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    timeout_s: float | None = None,
    cache: SegmentCache | None = None,
    limits: Limits = DEFAULT_LIMITS,
    parallel: int = 0,
    captions: BurnIn | None = None,
    music: Music | None = None,
    subtitles: tuple[Cue, ...] | None = None,
    max_segment_s: float | None = None,
) -> RenderResult:
    """Render `inputs` in order into `output`, in this process; `timeout_s` applies per
    FFmpeg run. Segments (`plan_render`) not in `cache` are encoded `parallel` at once (0:
    `segment_workers()`). `captions` are burned into the segments they fall on (and are
    part of those segments' cache keys); `music` is mixed under the clips' audio and
    `subtitles` added as a soft caption track, both in the join.

    Progress: encoding the segments is 96 % of the work, shared by duration; the join
    is the last 4 %. Intermediate files live in a scratch directory inside `work_dir` that
    is removed at the end, whether the render succeeded or not.
    """
    if not inputs:
        raise ValueError("nothing to render: no clips")
    plan_segments(inputs, settings.fps, max_segment_s)  # ClipError before any work
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="render-", dir=work_dir))
    try:
        plan = plan_render(
            inputs, settings, scratch, captions=captions, max_segment_s=max_segment_s
        )
        segments = plan.segments
        total = sum(segment.duration for segment in segments)
        reused = 0
        pending = []
        for segment in segments:
            if cache and segment.key and cache.fetch(segment.key, segment.video, segment.audio):
                segment.done = 1.0
                reused += 1
            else:
                pending.append(segment)
        levels = loudness_levels(plan, pending, ffmpeg, timeout_s, limits)

        def report() -> None:
            if on_progress:
                on_progress(SEGMENTS_SHARE * sum(s.done * s.duration for s in segments) / total)

        def finished(segment: Segment) -> None:
            if cache and segment.key:
                cache.store(segment.key, segment.video, segment.audio)

        report()
        render_segments(
            plan, pending, levels, parallel=parallel, report=report, finished=finished,
            ffmpeg=ffmpeg, timeout_s=timeout_s, limits=limits,
        )  # fmt: skip
        join_planned(
            plan, output,
            on_progress=_share(on_progress, SEGMENTS_SHARE, 1 - SEGMENTS_SHARE),
            ffmpeg=ffmpeg, timeout_s=timeout_s, limits=limits, music=music, subtitles=subtitles,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = probe(output, ffprobe, limits)
    return RenderResult(
        output=output,
        duration_s=info.duration,
        size_bytes=output.stat().st_size,
        frames=plan.frames,
        segments=len(segments),
        settings=settings,
        reused_segments=reused,
        stream_copy=plan.copy,
    )


def _attach_captions(
    segment: Segment, captions: BurnIn, settings: EncodeSettings, scratch: Path
) -> None:
    """Write the captions that fall on `segment` (times from its start) next to it, and make
    them part of its cache key; a segment without any keeps its plain key."""
    if not cues_in_span(list(captions.cues), segment.offset_s, segment.duration):
        return
    document = ass_document(
        list(captions.cues), captions.style, settings.width, settings.height,
        segment.offset_s, segment.duration,
    )  # fmt: skip
    segment.captions = scratch / f"captions-{segment.index:04d}.ass"
    segment.captions.write_text(document, encoding="utf-8")
    if segment.key:
        digest = hashlib.sha256(document.encode()).hexdigest()[:16]
        segment.key = f"{segment.key}-cc{digest}"


def loudness_levels(
    plan: RenderPlan,
    pending: list[Segment],
    ffmpeg: str = "ffmpeg",
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[int, tuple[float, bool]]:
    """Each clip's loudness correction, measured over its whole span once, for the clips
    that have a segment (or the far side of a transition) to render: every part of a clip
    gets the same gain, so its level does not step at a transition or between chunks."""
    settings = plan.settings
    if settings.loudness is None:
        return {}
    needed = {s.clip for s in pending} | {s.clip + 1 for s in pending if s.b is not None}
    levels = {}
    for n, inp in enumerate(plan.inputs):
        if n in needed and inp.info.has_audio:
            job = segment_job(inp, inp.path, inp.path)  # outputs unused: only measured
            job = normalized(job, settings.loudness, inp.label, ffmpeg, timeout_s, limits)
            levels[n] = (job.gain_db, job.limiter)
    return levels
