"""Planning a render: the timeline cut into segments (one per clip, or per chunk of a long
one, each ending in the transition out of it), their files in a scratch directory, their
captions and cache keys, and the audio track they make together. The plan is what
`render.render_video` renders in one process and what the fan-out (`defs/export/encode.py`)
spreads over steps, each step planning the same segments from the same clips."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.captions import Cue, cues_in_span
from export_pipeline.media.captions import BurnIn, ass_document
from export_pipeline.media.clip import Clip, ClipError, copy_path, effective_duration, secs
from export_pipeline.media.encoding import EncodeSettings, audio_sample_count, frame_count
from export_pipeline.media.filters import TRANSITIONS
from export_pipeline.media.segment import Segment, segment_keys, with_captions
from export_pipeline.media.soundtrack import Music

# The audio track's weight among the parts, as a fraction of the video's length: the share
# of the encode's time it takes (bench_fanout: 1-1.5 s of CPU per 10 s at 1080p `high`,
# where the pictures take 7-8 s).
AUDIO_WEIGHT = 0.15


@dataclass(frozen=True)
class RenderOptions:
    """What a render adds to its clips and how it cuts them: `captions` burned into the
    pictures, `music` under the sound, `subtitles` as a soft caption track, segments of at
    most `max_segment_s` (None: one per clip), `parallel` of them rendered at once in one
    process (0: `execute.segment_workers()`)."""

    captions: BurnIn | None = None
    music: Music | None = None
    subtitles: tuple[Cue, ...] | None = None
    max_segment_s: float | None = None
    parallel: int = 0


@dataclass
class AudioTrack:
    """The sound of a whole render, rendered beside the segments (its index comes after
    theirs) so that its encode runs while the pictures are encoded: every segment's WAV
    (`Segment.audio`), joined, with the music mixed in, encoded once into `path`, which the
    join copies. `duration` is its weight in the progress (AUDIO_WEIGHT of the video's
    length), `done` its share rendered so far."""

    index: int
    path: Path
    duration: float
    done: float = 0.0
    label: str = "the audio track"


# What there is to render: a segment's pictures, or the audio track.
Renderable = Segment | AudioTrack


@dataclass
class RenderPlan:
    """An export's segments, planned, filed and keyed, and its audio track; `copy` says
    every clip's video goes in untouched (`clip.copy_path`)."""

    clips: list[Clip]
    settings: EncodeSettings
    segments: list[Segment]
    copy: bool
    audio: AudioTrack
    music: Music | None = None

    @property
    def frames(self) -> int:
        return sum(segment.frames for segment in self.segments)

    @property
    def parts(self) -> list[Renderable]:
        """Everything there is to render, by index: the segments, then the audio track."""
        return [*self.segments, self.audio]

    @property
    def samples(self) -> int:
        return sum(audio_sample_count(s.frames, self.settings) for s in self.segments)


def _overlaps(clips: list[Clip], fps: Fraction) -> list[int]:
    """Frames each clip shares with the one before it (a transition of d seconds overlaps
    the two by d, rounded to whole frames); one more 0 after the last clip."""
    overlap = [0]
    for clip in clips[1:]:
        fades = clip.transition is not None and clip.transition.kind in TRANSITIONS
        overlap.append(frame_count(clip.transition.duration, fps) if fades else 0)
    return [*overlap, 0]


def _spans(
    clips: list[Clip], n: int, frames: int, overlap: list[int], longest: int, fps: Fraction
) -> list[tuple[Clip, Clip | None]]:
    """The spans of clip `n` (`frames` long) that are segments of their own, and for the
    last one the next clip's first frames it blends into (None: a cut)."""
    clip = clips[n]
    head, tail = overlap[n], overlap[n + 1]
    if frames - head - tail < 1:
        raise ClipError(
            clip.label,
            f"its transitions ({secs(float((head + tail) / fps))} s) take all of its "
            f"{secs(float(frames / fps))} s: shorten them or the clip",
        )
    own = frames - head  # the frames this clip's segments cover
    chunks = max(1, -(-own // longest)) if longest else 1
    while chunks > 1 and own // chunks <= tail:  # the last chunk holds the transition
        chunks -= 1
    into = clips[n + 1].frames_span(0, tail, fps) if tail else None
    spans, start = [], head
    for k in range(chunks):
        length = own // chunks + (1 if k < own % chunks else 0)
        span = clip if chunks == 1 and not head else clip.frames_span(start, length, fps)
        spans.append((span, into if k == chunks - 1 else None))
        start += length
    return spans


def plan_segments(
    clips: list[Clip], fps: Fraction, max_segment_s: float | None = None
) -> list[Segment]:
    """The timeline as segments, in order: one per clip, or per chunk of a clip longer than
    `max_segment_s` (its span cut evenly on the output frame grid into the fewest chunks of
    at most that length, so one long clip spreads over many workers too). A transition of
    d seconds overlaps the two clips by d, so the video is d shorter than its clips: the
    first clip's (last) segment ends blending into the next clip's first d, and the next
    clip's segment starts after them. No segment needs another's frames, and a short clip
    without transitions is one segment playing all of it. Raises ClipError when a clip's
    transitions leave none of it to play alone."""
    lengths = [frame_count(effective_duration(clip), fps) for clip in clips]
    overlap = _overlaps(clips, fps)
    longest = frame_count(max_segment_s, fps) if max_segment_s and max_segment_s > 0 else 0
    segments: list[Segment] = []
    offset = 0
    for n in range(len(clips)):
        for span, into in _spans(clips, n, lengths[n], overlap, longest, fps):
            frames = frame_count(effective_duration(span), fps)
            kind = clips[n + 1].transition.kind if into is not None else "cut"
            segments.append(
                Segment(
                    len(segments),
                    n,
                    span,
                    frames,
                    float(frames / fps),
                    float(offset / fps),
                    into,
                    kind,
                )  # fmt: skip
            )
            offset += frames
    return segments


def plan_render(
    clips: list[Clip],
    settings: EncodeSettings,
    scratch: Path,
    options: RenderOptions = RenderOptions(),  # noqa: B008 - frozen, never changed
) -> RenderPlan:
    """Plan the render of `clips`: the segments (raises ClipError for a clip that cannot be
    rendered), their files in `scratch`, the captions to burn into each (written there, and
    part of the segment's key), and the audio track, with the music mixed in."""
    if not clips:
        raise ValueError("nothing to render: no clips")
    segments = plan_segments(clips, settings.fps, options.max_segment_s)
    transitions = any(s.into is not None for s in segments)
    copy = not transitions and not options.captions and copy_path(clips, settings)
    extension = settings.format.segments.extension
    for segment in segments:
        segment.video = scratch / f"segment-{segment.index:04d}.{extension}"
        segment.audio = scratch / f"segment-{segment.index:04d}.wav"
        segment.key, segment.audio_key = segment_keys(segment, clips, settings, copy)
        if options.captions:
            _attach_captions(segment, options.captions, settings, scratch)
    length = sum(s.frames for s in segments) / settings.fps
    track = AudioTrack(
        len(segments),
        scratch / f"audio.{settings.format.audio.track.extension}",
        AUDIO_WEIGHT * float(length),
    )
    return RenderPlan(clips, settings, segments, copy, track, options.music)


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
    segment.key = with_captions(segment.key, document)
