"""Render an export: one segment per clip (or per chunk of a long clip), an audio track, and
one join by stream copy.

`render_video` does the whole thing in a private scratch directory: `plan_render` plans the
segments; each segment's pictures are rendered by `render_planned`, and the sound of all of
them by `render_audio` into the audio track (an encoded file), side by side; `join_planned`
copies both into the video. A pipeline that spreads the parts over steps (`encode.assets`)
calls the same functions; every segment of one join must be made with the same
EncodeSettings.
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

from export_pipeline.domain.captions import CaptionStyle, Cue, cues_in_span
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.soundtrack import Soundtrack
from export_pipeline.media.captions import ass_document, caption_document
from export_pipeline.media.commands import (
    TRANSITIONS,
    EncodeSettings,
    Loudness,
    SegmentJob,
    Source,
    TransitionOut,
    audio_sample_count,
    audio_track_argv,
    available_cpus,
    concat_argv,
    concat_list,
    copy_segment_argv,
    frame_count,
    loudness_argv,
    loudness_gain,
    parse_loudness,
    segment_argv,
    segment_audio_argv,
)
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg
from export_pipeline.media.probe import MediaInfo, probe
from export_pipeline.media.runner import FFmpegError
from export_pipeline.media.soundtrack import mix_filter, mix_inputs

Progress = Callable[[float], None]

# Share of the overall progress given to encoding the segments and the audio track; the join
# (a stream copy) gets the rest: about its share of the time (bench_eta: 1.2-1.4 s of a
# 35-50 s encode).
SEGMENTS_SHARE = 0.96
# The audio track's weight among the parts, as a fraction of the video's length: the share
# of the encode's time it takes (bench_fanout: 1-1.5 s of CPU per 10 s at 1080p `high`,
# where the pictures take 7-8 s).
AUDIO_WEIGHT = 0.15
# Measurements of a limited clip's loudness after its correction (see `normalized`).
LIMITED_PASSES = 2
# The longest loudness measurement when the runner has no timeout of its own.
LOUDNESS_TIMEOUT_S = 600.0
# How often progress is reported while segments are being encoded.
PROGRESS_POLL_S = 0.5


@dataclass(frozen=True)
class RenderInput:
    """One clip of an export, as probed; `label` names it in errors ("clip 3 (scene 7)")."""

    path: Source  # a local file, or a file of our storage read over HTTP (RemoteFile)
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
    """A soundtrack, mixed under the clips' audio in the audio track: the file, how it
    plays, its length (None: unknown)."""

    path: Path
    track: Soundtrack
    duration_s: float | None = None


@dataclass(frozen=True)
class BurnIn:
    """Captions to draw into the pictures: cues on the final timeline, and their style."""

    cues: tuple[Cue, ...]
    style: CaptionStyle


class SegmentCache(Protocol):
    """Where rendered segments are kept between exports, each half under its own name
    (`Segment.video_name`, `Segment.audio_name`: source content, span and the settings
    that change it), so a re-export only renders the clips that changed."""

    def fetch(self, name: str, out: Path) -> bool: ...

    def store(self, name: str, path: Path) -> None: ...


class ClipError(ExportFailure):
    """A clip that cannot be rendered as asked (permanent); the message starts with the
    clip's label. Its cause: the request (a trim past the clip's end, transitions longer
    than the clip) unless told otherwise (a file with nothing to decode)."""

    def __init__(
        self, label: str, problem: str, cause: FailureCause = FailureCause.INVALID_REQUEST
    ) -> None:
        self.label = label
        self.problem = problem
        super().__init__(f"{label}: {problem}", cause=cause, permanent=True)


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
    """Whether the clip's video can go into the export untouched: in the format's codec (one
    that `copies_clips`), yuv420p with square pixels at the target size and rate, within the
    quality's bitrate cap, used whole."""
    info = inp.info
    whole = inp.trim_start == 0 and (
        inp.duration is None or inp.duration >= info.duration - 1 / float(settings.fps)
    )
    return (
        whole
        and settings.format.copies_clips
        and info.video_codec == settings.format.video.codec
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


def _span_key(inp: RenderInput) -> str | None:
    """The span of `inp` actually used, from normalized values: a duration past the clip's
    end is the same span as "to the end", so keys stay short and equal requests share one
    segment."""
    if not inp.content_hash:
        return None
    used = effective_duration(inp)  # bounded by the clip's own length
    to_end = inp.duration is None or inp.trim_start + inp.duration >= inp.info.duration
    length = "end" if to_end else f"{used:.3f}"
    return f"{inp.content_hash}/{inp.trim_start:.3f}-{length}"


def segment_key(inp: RenderInput, settings: EncodeSettings, copy: bool) -> str | None:
    """Where the pictures of the segment of `inp` are cached (None: the clip's content is
    unknown): its span and the encoder settings."""
    span = _span_key(inp)
    if span is None:
        return None
    return f"{span}-{'copy' if copy else settings.cache_key()}"


def audio_segment_key(
    inp: RenderInput, settings: EncodeSettings, whole: RenderInput | None = None
) -> str | None:
    """Where the sound of the segment of `inp` is cached: its span, the audio settings and,
    when loudness is evened out and `inp` is a part of a longer span `whole` (a chunk, or
    the head of a transition), that span too: the clip's gain is measured over all of it."""
    span = _span_key(inp)
    if span is None:
        return None
    key = f"{span}-a{settings.audio_key()}"
    if settings.loudness is not None and whole is not None and whole != inp:
        key += f"-of{_span_key(whole).rsplit('/', 1)[1]}"
    return key


def measure_loudness(job: SegmentJob, label: str, ffmpeg: FFmpeg = DEFAULT_FFMPEG) -> Loudness:
    """The integrated loudness and true peak of the clip's span (its audio alone)."""
    argv = loudness_argv(job)
    done = ffmpeg.capture(argv, timeout_s=ffmpeg.timeout_s or LOUDNESS_TIMEOUT_S)
    if done.returncode != 0:
        error = FFmpegError(
            ffmpeg.command(argv),
            done.returncode,
            done.stderr[-2000:],
            over_limit=bool(done.over_limit),
        )
        error.add_note(f"while measuring the loudness of {label}")
        raise error
    return parse_loudness(done.stderr)


def normalized(
    job: SegmentJob, target: float, label: str, ffmpeg: FFmpeg = DEFAULT_FFMPEG
) -> SegmentJob:
    """`job` with the gain that brings its clip to `target` LUFS. Where the limiter has to
    hold the peaks, it also takes some loudness away (2 LU on speech-like bursts): the
    corrected audio is measured again and the gain raised by what is missing, up to
    LIMITED_PASSES times (each pass decodes the clip's audio only)."""
    measured = measure_loudness(job, label, ffmpeg)
    gain, limiter = loudness_gain(measured, target)
    job = replace(job, gain_db=gain, limiter=limiter)
    for _ in range(LIMITED_PASSES if limiter else 0):
        missing = target - measure_loudness(job, label, ffmpeg).integrated
        if abs(missing) < 0.3:
            break
        job = replace(job, gain_db=round(job.gain_db + missing, 2))
    return job


def _level(job: SegmentJob, level: tuple[float, bool] | None) -> SegmentJob:
    return job if level is None else replace(job, gain_db=level[0], limiter=level[1])


def transition_out(
    kind: str, into: RenderInput, level: tuple[float, bool] | None = None
) -> TransitionOut:
    """A `kind` transition into `into` (the next clip's first frames, as long as the
    transition), corrected for loudness by `level` (gain dB, limiter) as its clip is."""
    head = segment_job(into, into.path, into.path)  # its outputs are unused: an input
    return TransitionOut(kind, _level(head, level))


def _run_segment(
    argv: list[str], job: SegmentJob, label: str, on_progress: Progress | None, ffmpeg: FFmpeg
) -> int:
    """Run one of a segment's FFmpeg commands; its error names the clip."""
    try:
        return ffmpeg.run(argv, duration_s=job.duration, on_progress=on_progress)
    except FFmpegError as error:
        error.add_note(f"while encoding {label}")
        raise


def render_segment_video(
    inp: RenderInput,
    settings: EncodeSettings,
    video_out: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    copy: bool = False,
    captions: Path | None = None,
    out: TransitionOut | None = None,
) -> int:
    """Encode the pictures of one segment (in the format's segment container); return its
    frames. With `copy` (see `can_copy`) the video is stream-copied instead of encoded.
    `captions` (an ASS file, times from the segment's start) are burned in. With `out`
    (`transition_out`) the segment ends in the transition into the next clip. Setting the
    runner's `stop` kills FFmpeg and raises runner.Stopped; an FFmpegError raised here
    carries a note naming the clip.
    """
    job = replace(segment_job(inp, video_out, video_out), captions=captions)
    frames = frame_count(job.duration, settings.fps)
    argv = copy_segment_argv(job, settings) if copy else segment_argv(job, settings, out)
    written = _run_segment(argv, job, inp.label, on_progress, ffmpeg)
    if written == 0:  # FFmpeg can read nothing from a damaged file and still exit 0
        raise ClipError(
            inp.label,
            "no video could be decoded from the file; upload it again",
            FailureCause.INVALID_CLIP_FILE,
        )
    return frames


def render_segment_audio(
    inp: RenderInput,
    settings: EncodeSettings,
    audio_out: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    level: tuple[float, bool] | None = None,
    out: TransitionOut | None = None,
) -> None:
    """Render the sound of one segment into its WAV, exactly as long as its pictures.
    `level` is the clip's loudness correction (gain dB, limiter) when known; else, with a
    target in `settings`, the span is measured. With `out` its end crossfades into the next
    clip (whose correction `out` carries)."""
    job = _level(segment_job(inp, audio_out, audio_out), level)
    if level is None and settings.loudness is not None and job.has_audio:
        job = normalized(job, settings.loudness, inp.label, ffmpeg)
    argv = segment_audio_argv(job, settings, out)
    _run_segment(argv, job, inp.label, on_progress, ffmpeg)


def render_segment(
    inp: RenderInput,
    settings: EncodeSettings,
    video_out: Path,
    audio_out: Path,
    *,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    copy: bool = False,
    level: tuple[float, bool] | None = None,
    captions: Path | None = None,
) -> int:
    """Both halves of one segment (a whole clip's span, no transition): its pictures into
    `video_out`, its sound into `audio_out`; returns the frames."""
    frames = render_segment_video(
        inp, settings, video_out, ffmpeg=ffmpeg, copy=copy, captions=captions
    )
    render_segment_audio(inp, settings, audio_out, ffmpeg=ffmpeg, level=level)
    return frames


def _concat_file(paths: list[Path], kind: str) -> Path:
    """A concat list of `paths` written next to them (removed by the caller)."""
    with tempfile.NamedTemporaryFile(
        "w", dir=paths[0].parent, prefix=f"{kind}-", suffix=".ffconcat", delete=False
    ) as handle:
        handle.write(concat_list(paths))
    return Path(handle.name)


def encode_audio_track(
    audio_segments: list[Path],
    output: Path,
    settings: EncodeSettings,
    samples: int,
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    music: Music | None = None,
) -> None:
    """Join the WAV segments (in order, `samples` in all) and encode them once into the
    audio track `output` (the format's audio track file), the `music` mixed under them;
    `output` appears only when complete."""
    listing = _concat_file(audio_segments, "audio")
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        mix = None
        if music is not None:
            mix = (
                mix_inputs(music.path, music.track.loop),
                mix_filter("0:a:0", "1:a:0", samples, settings.audio_rate, music.track,
                           music.duration_s),
            )  # fmt: skip
        ffmpeg.run(
            audio_track_argv(listing, partial, settings, music=mix),
            duration_s=samples / settings.audio_rate,
            on_progress=on_progress,
        )
        os.replace(partial, output)
    finally:
        listing.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


def join_segments(
    video_segments: list[Path],
    audio_track: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    duration_s: float | None = None,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    subtitles: tuple[Cue, ...] | None = None,
) -> None:
    """Join the video segments (in order) and the audio track into `output` by stream copy;
    `output` appears only when complete. The concat list is written next to the segments
    and removed afterwards; `duration_s` is the expected total, for progress. `subtitles`
    become a soft caption track."""
    lists: list[Path] = []
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        lists.append(_concat_file(video_segments, "video"))
        output.parent.mkdir(parents=True, exist_ok=True)
        track = None
        if subtitles:
            soft = settings.format.subtitles
            track = video_segments[0].parent / f"captions.{soft.extension}"
            track.write_text(caption_document(soft.document, subtitles), encoding="utf-8")
            lists.append(track)
        ffmpeg.run(
            concat_argv(lists[0], audio_track, partial, settings, subtitles=track),
            duration_s=duration_s,
            on_progress=on_progress,
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
    its pictures and its sound go, where it starts on the timeline, its share of the
    progress, the cache keys of its pictures and of its sound (None: not cacheable, the
    clip's content hash is unknown)."""

    index: int
    inp: RenderInput
    duration: float
    video: Path
    audio: Path
    key: str | None
    done: float = 0.0  # fraction of its pictures encoded, written by the encoding thread
    b: RenderInput | None = None
    kind: str = "cut"  # of the transition at its end
    clip: int = 0  # which clip of the render `inp` is a span of (0-based)
    frames: int = 0
    offset_s: float = 0.0
    captions: Path | None = None
    audio_key: str | None = None

    @property
    def label(self) -> str:
        if self.b is None:
            return self.inp.label
        return f"{self.inp.label} and the {self.kind} into {self.b.label}"

    @property
    def video_name(self) -> str | None:
        """Its pictures' name in a SegmentCache."""
        return f"{self.key}{self.video.suffix}" if self.key else None

    @property
    def audio_name(self) -> str | None:
        """Its sound's name in a SegmentCache."""
        return f"{self.audio_key}.wav" if self.audio_key else None


@dataclass
class AudioTrack:
    """The sound of a whole render, one part of it beside the segments (whose index comes
    after theirs): every segment's WAV (`Segment.audio`), joined, with the soundtrack mixed
    in, and encoded once into `path`, which the join copies. It is rendered apart from the
    pictures so that its encode runs while they are encoded, not after the last one."""

    index: int
    path: Path
    duration: float  # its weight in the progress (AUDIO_WEIGHT of the video's length)
    done: float = 0.0
    label: str = "the audio track"


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


RenderPart = Segment | AudioTrack


def _encode_all(
    pending: list[RenderPart],
    render: Callable[[RenderPart, Progress, threading.Event], object],
    workers: int,
    report: Callable[[], None],
    finished: Callable[[RenderPart], None],
) -> None:
    """Render `pending` with up to `workers` at once. `render(part, on_progress, stop)`
    runs on a pool thread; `report` (progress) and `finished` (the cache) run here, on the
    calling thread, as do the errors: the first one raised stops the other encodes (their
    FFmpeg is killed) before it propagates, and so does anything that interrupts this thread
    (a canceled run's DagsterExecutionInterruptedError)."""
    stop = threading.Event()

    def work(part: RenderPart) -> object:
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
    scratch directory, its place on the timeline and its cache keys, and the audio track
    they make together: what `render_video` renders in one process, and what the fan-out
    (`encode.assets`) spreads over steps, each step planning the same parts from the same
    inputs."""

    inputs: list[RenderInput]
    settings: EncodeSettings
    segments: list[Segment]
    copy: bool  # every clip's video goes in untouched (`copy_path`)
    audio: AudioTrack
    music: Music | None = None

    @property
    def frames(self) -> int:
        return sum(segment.frames for segment in self.segments)

    @property
    def parts(self) -> list[RenderPart]:
        """Everything there is to render, by index: the segments, then the audio track."""
        return [*self.segments, self.audio]

    @property
    def samples(self) -> int:
        return sum(audio_sample_count(s.frames, self.settings) for s in self.segments)


def plan_render(
    inputs: list[RenderInput],
    settings: EncodeSettings,
    scratch: Path,
    *,
    captions: BurnIn | None = None,
    max_segment_s: float | None = None,
    music: Music | None = None,
) -> RenderPlan:
    """Plan the render of `inputs`: the segments (raises ClipError for a clip that cannot
    be rendered), their files in `scratch`, the captions to burn into each (written
    there, and part of the segment's key), and the audio track, with `music` mixed in."""
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
        audio_key = audio_segment_key(inp, settings, inputs[part.clip])
        if b is not None:
            key = _with_transition(key, segment_key(b, settings, copy), kind)
            b_audio = audio_segment_key(b, settings, inputs[part.clip + 1])
            audio_key = _with_transition(audio_key, b_audio, kind)
        segment = Segment(
            index, inp, float(frames / settings.fps),
            scratch / f"segment-{index:04d}.{settings.format.segments.extension}",
            scratch / f"segment-{index:04d}.wav",
            key, b=b, kind=kind, clip=part.clip, frames=frames,
            offset_s=float(offset / settings.fps), audio_key=audio_key,
        )  # fmt: skip
        if captions:
            _attach_captions(segment, captions, settings, scratch)
        segments.append(segment)
        offset += frames
    length = float(offset / settings.fps)
    track = AudioTrack(
        len(segments),
        scratch / f"audio.{settings.format.audio.track.extension}",
        AUDIO_WEIGHT * length,
    )
    return RenderPlan(inputs, settings, segments, copy, track, music)


def render_planned(
    plan: RenderPlan,
    segment: Segment,
    *,
    settings: EncodeSettings | None = None,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
) -> int:
    """Render the pictures of one segment of `plan` into its file (`settings`: the plan's,
    or the same with fewer threads when segments are rendered side by side); returns its
    frames."""
    out = transition_out(segment.kind, segment.b) if segment.b is not None else None
    try:
        return render_segment_video(
            segment.inp, settings or plan.settings, segment.video,
            on_progress=on_progress, ffmpeg=ffmpeg, copy=plan.copy, captions=segment.captions,
            out=out,
        )  # fmt: skip
    except FFmpegError as error:
        if segment.b is not None:
            error.add_note(f"with the {segment.kind} into {segment.b.label}")
        raise


def render_audio(
    plan: RenderPlan,
    pending: list[Segment],
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
) -> None:
    """Render the plan's audio track: the sound of the `pending` segments (the others' WAVs
    must already be in their files, from a cache), each clip brought to the loudness target
    by one gain measured over its whole span (`loudness_levels`), then all of them joined
    and encoded once, with the plan's music, into `plan.audio.path`. Progress: measuring a
    quarter, the segments' sound a quarter, the encode half."""

    def phase(start: float, span: float) -> Progress | None:
        return _share(on_progress, start, span)

    levels = loudness_levels(plan, pending, ffmpeg)
    if on_progress:
        on_progress(0.25)
    for n, segment in enumerate(pending):
        out = None
        if segment.b is not None:
            out = transition_out(segment.kind, segment.b, levels.get(segment.clip + 1))
        render_segment_audio(
            segment.inp, plan.settings, segment.audio, ffmpeg=ffmpeg,
            level=levels.get(segment.clip, (0.0, False)), out=out,
            on_progress=phase(0.25 + 0.25 * n / len(pending), 0.25 / len(pending)),
        )  # fmt: skip
    encode_audio_track(
        [segment.audio for segment in plan.segments], plan.audio.path, plan.settings,
        plan.samples, on_progress=phase(0.5, 0.5), ffmpeg=ffmpeg, music=plan.music,
    )  # fmt: skip


def join_planned(
    plan: RenderPlan,
    output: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    subtitles: tuple[Cue, ...] | None = None,
) -> None:
    """Join the plan's rendered segments (all in their files) and its audio track into
    `output`."""
    join_segments(
        [segment.video for segment in plan.segments],
        plan.audio.path,
        output,
        plan.settings,
        duration_s=plan.frames / plan.settings.fps,
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        subtitles=subtitles,
    )


def render_segments(
    plan: RenderPlan,
    parts: list[RenderPart],
    *,
    audio_pending: list[Segment] | None = None,
    parallel: int = 0,
    report: Callable[[], None] | None = None,
    finished: Callable[[Segment], None] | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
) -> None:
    """Render `parts` of `plan`: segments' pictures, and the audio track if it is among them
    (with the sound of the `audio_pending` segments: `render_audio`), `parallel` at once
    (0: `segment_workers()`), sharing the encoder threads one would have. Each part's `done`
    follows its progress; `report` is called as it moves and `finished(segment)` once a
    segment's pictures are complete, both on this thread. The first error (or an interrupt
    of this thread) stops the other FFmpeg."""
    if not parts:
        return
    workers = min(segment_workers(parallel), len(parts))
    settings = plan.settings
    if workers > 1 and settings.threads > 0:
        settings = replace(settings, threads=math.ceil(settings.threads / workers))

    def render(part: RenderPart, progress: Progress, stop: threading.Event) -> object:
        stoppable = ffmpeg.stopped_by(stop)
        if isinstance(part, AudioTrack):
            return render_audio(plan, audio_pending or [], on_progress=progress, ffmpeg=stoppable)
        return render_planned(plan, part, settings=settings, on_progress=progress, ffmpeg=stoppable)

    def done(part: RenderPart) -> None:
        part.done = 1.0
        if finished and isinstance(part, Segment):
            finished(part)

    _encode_all(parts, render, workers, report or (lambda: None), done)


def render_video(
    inputs: list[RenderInput],
    settings: EncodeSettings,
    work_dir: Path,
    output: Path,
    *,
    on_progress: Progress | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    cache: SegmentCache | None = None,
    parallel: int = 0,
    captions: BurnIn | None = None,
    music: Music | None = None,
    subtitles: tuple[Cue, ...] | None = None,
    max_segment_s: float | None = None,
    audio_track: Path | None = None,
) -> RenderResult:
    """Render `inputs` in order into `output`, in this process, with `ffmpeg` (its timeout
    applies per FFmpeg run). Segments (`plan_render`) whose pictures are not in `cache` are encoded
    `parallel` at once (0: `segment_workers()`), the audio track beside them (unless
    `audio_track` is that file, already rendered), from the sound of the segments, cached
    or rendered. `captions` are burned into the segments they fall on (and are part of
    those segments' cache keys); `music` is mixed into the audio track and `subtitles`
    added as a soft caption track in the join.

    Progress: encoding the parts is 96 % of the work, shared by weight (a segment's is its
    length); the join is the last 4 %. Intermediate files live in a scratch directory
    inside `work_dir` that is removed at the end, whether the render succeeded or not.
    """
    if not inputs:
        raise ValueError("nothing to render: no clips")
    plan_segments(inputs, settings.fps, max_segment_s)  # ClipError before any work
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="render-", dir=work_dir))
    try:
        plan = plan_render(
            inputs, settings, scratch, captions=captions, max_segment_s=max_segment_s,
            music=music,
        )  # fmt: skip
        segments = plan.segments
        reused = 0
        pending: list[RenderPart] = []
        for segment in segments:
            name = segment.video_name
            if cache and name and cache.fetch(name, segment.video):
                segment.done = 1.0
                reused += 1
            else:
                pending.append(segment)
        sounds: list[Segment] = []
        if audio_track is not None:
            shutil.copyfile(audio_track, plan.audio.path)
            plan.audio.done = 1.0
        else:
            sounds = [
                s for s in segments
                if not (cache and s.audio_name and cache.fetch(s.audio_name, s.audio))
            ]  # fmt: skip
            pending.insert(0, plan.audio)  # first: it takes longer than one segment
        parts = plan.parts
        total = sum(part.duration for part in parts)

        def report() -> None:
            if on_progress:
                on_progress(SEGMENTS_SHARE * sum(p.done * p.duration for p in parts) / total)

        def finished(segment: Segment) -> None:
            if cache and segment.video_name:
                cache.store(segment.video_name, segment.video)

        report()
        render_segments(
            plan, pending, audio_pending=sounds, parallel=parallel, report=report,
            finished=finished, ffmpeg=ffmpeg,
        )  # fmt: skip
        for segment in sounds:
            if cache and segment.audio_name:
                cache.store(segment.audio_name, segment.audio)
        join_planned(
            plan, output,
            on_progress=_share(on_progress, SEGMENTS_SHARE, 1 - SEGMENTS_SHARE),
            ffmpeg=ffmpeg, subtitles=subtitles,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = probe(output, ffmpeg)
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
    plan: RenderPlan, pending: list[Segment], ffmpeg: FFmpeg = DEFAULT_FFMPEG
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
            job = normalized(job, settings.loudness, inp.label, ffmpeg)
            levels[n] = (job.gain_db, job.limiter)
    return levels
