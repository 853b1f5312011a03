"""The segment: a span of the timeline (all of one clip, or a chunk of a long one, ending in
the transition into the next clip when there is one), rendered on its own and cached under
keys made of what changes it. Its pictures and its sound are two FFmpeg runs, so they can
be made by different steps: the pictures a video-only file with an exact frame count in the
format's segment container, the sound a PCM WAV of exactly the same length."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from export_pipeline.domain.failures import FailureCause
from export_pipeline.media.clip import Clip, ClipError, effective_duration, max_pixels, open_span
from export_pipeline.media.colour import SDR_BT709, colour_decision
from export_pipeline.media.encoding import (
    EncodeSettings,
    audio_sample_count,
    frame_count,
    video_encoder_args,
)
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg, Progress
from export_pipeline.media.filters import audio_filter, blend, burn_in, video_filter
from export_pipeline.media.inputs import (
    COMMON_FLAGS,
    PROGRESS_FLAGS,
    clip_input,
    file_url,
    threads_option,
)
from export_pipeline.media.loudness import AS_IS, Level, normalized
from export_pipeline.media.runner import FFmpegError


@dataclass
class Segment:
    """One span of the timeline. Planned (`plan.plan_segments`): clip number `clip`
    (0-based), the `span` of it played here, and with `into` (the next clip's first frames)
    the `kind` of transition from the end of `span` into it; its frames, its length and
    where it starts. Filed and keyed (`plan.plan_render`): its pictures' and sound's files,
    the captions burned into it, its cache keys (None: not cacheable, the clip's content
    is unknown). Rendered by `render_pictures` and `render_sound`; `done` is the share of
    its pictures rendered so far."""

    index: int
    clip: int
    span: Clip
    frames: int = 0
    duration: float = 0.0  # seconds on the timeline: `frames` at the output rate
    offset_s: float = 0.0
    into: Clip | None = None
    kind: str = "cut"  # of the transition at its end
    video: Path | None = None
    audio: Path | None = None
    captions: Path | None = None  # an ASS file, times from the segment's start
    key: str | None = None
    audio_key: str | None = None
    done: float = 0.0

    @property
    def label(self) -> str:
        if self.into is None:
            return self.span.label
        return f"{self.span.label} and the {self.kind} into {self.into.label}"

    @property
    def video_name(self) -> str | None:
        """Its pictures' name in a segment cache."""
        return f"{self.key}{self.video.suffix}" if self.key and self.video else None

    @property
    def audio_name(self) -> str | None:
        """Its sound's name in a segment cache."""
        return f"{self.audio_key}.wav" if self.audio_key else None


# --- cache keys ---------------------------------------------------------------------------


def _span_key(clip: Clip) -> str | None:
    """The span of `clip` actually used, from normalized values: a duration past the clip's
    end is the same span as "to the end", so keys stay short and equal requests share one
    segment."""
    if not clip.content_hash:
        return None
    used = effective_duration(clip)  # bounded by the clip's own length
    to_end = clip.duration is None or clip.trim_start + clip.duration >= clip.info.duration
    length = "end" if to_end else f"{used:.3f}"
    return f"{clip.content_hash}/{clip.trim_start:.3f}-{length}"


# The key of a stream-copied segment's pictures; 2: retagged SDR BT.709.
COPY_KEY = "copy2"


def segment_key(clip: Clip, settings: EncodeSettings, copy: bool) -> str | None:
    """Where the pictures of a segment playing `clip` are cached (None: the clip's content
    is unknown): its span, the encoder settings and the clip's colour decision (none for
    the usual `sdr-bt709`, whose pictures pass unchanged)."""
    span = _span_key(clip)
    if span is None:
        return None
    colour = colour_decision(clip.info)
    key = f"{span}-{COPY_KEY if copy else settings.cache_key()}"
    return key if colour == SDR_BT709 else f"{key}-{colour}"


def audio_segment_key(
    clip: Clip, settings: EncodeSettings, whole: Clip | None = None
) -> str | None:
    """Where the sound of a segment playing `clip` is cached: its span, the audio settings
    and, when loudness is evened out and `clip` is a part of a longer span `whole` (a chunk,
    or the head of a transition), that span too: the clip's gain is measured over all of it."""
    span = _span_key(clip)
    if span is None:
        return None
    key = f"{span}-a{settings.audio_key()}"
    if settings.loudness is not None and whole is not None and whole != clip:
        key += f"-of{_span_key(whole).rsplit('/', 1)[1]}"
    return key


def _with_transition(key: str | None, into_key: str | None, kind: str) -> str | None:
    """The cache key of a segment ending in a transition: its own span's key, the kind, and
    the key of the next clip's frames it blends into (a change to either re-renders it)."""
    if not key or not into_key:
        return None
    digest = hashlib.sha256(f"{into_key}|{kind}".encode()).hexdigest()[:16]
    return f"{key}-{kind}-{digest}"


def with_captions(key: str | None, document: str) -> str | None:
    """The cache key of a segment with captions burned in: its key and the ASS document's."""
    if not key:
        return None
    return f"{key}-cc{hashlib.sha256(document.encode()).hexdigest()[:16]}"


def segment_keys(
    segment: Segment, clips: list[Clip], settings: EncodeSettings, copy: bool
) -> tuple[str | None, str | None]:
    """The cache keys of a planned segment's pictures and sound (before captions)."""
    key = segment_key(segment.span, settings, copy)
    audio_key = audio_segment_key(segment.span, settings, clips[segment.clip])
    if segment.into is not None:
        into_key = segment_key(segment.into, settings, copy)
        into_audio = audio_segment_key(segment.into, settings, clips[segment.clip + 1])
        key = _with_transition(key, into_key, segment.kind)
        audio_key = _with_transition(audio_key, into_audio, segment.kind)
    return key, audio_key


# --- FFmpeg command lines -----------------------------------------------------------------


def segment_argv(segment: Segment, settings: EncodeSettings) -> list[str]:
    """One FFmpeg run: the segment's pictures into `segment.video`, exactly
    `frame_count(effective_duration(span), fps)` frames; its sound is `segment_audio_argv`'s.

    With `into`, the segment's last frames are the transition into the next clip: the
    pictures blend (`crossfade`) or go through black (`fade`); the next clip's side is
    fitted and timed as its own segment is, so the seams on either side are invisible.
    Captions (`segment.captions`) are drawn over the blend.
    """
    span, into = segment.span, segment.into
    frames = frame_count(effective_duration(span), settings.fps)
    inputs = open_span(span)
    if into is None:
        graph = video_filter(span, settings, frames, captions=segment.captions)
    else:
        overlap = frame_count(effective_duration(into), settings.fps)
        blended = [blend(segment.kind, overlap, settings.fps, frames - overlap)]
        graph = ";".join(
            [
                video_filter(span, settings, frames, 0, "va"),
                video_filter(into, settings, overlap, 1, "vb"),
                ",".join([*blended, *burn_in(segment.captions)]) + "[v]",
            ]
        )
        inputs += open_span(into)
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        *PROGRESS_FLAGS,
        *inputs,
        *threads_option("-filter_complex_threads", settings.threads),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-frames:v",
        str(frames),
        *video_encoder_args(settings),
        "-map_metadata",
        "-1",
        "-f",
        settings.format.segments.muxer,
        file_url(segment.video),
    ]


def segment_audio_argv(
    segment: Segment, settings: EncodeSettings, level: Level = AS_IS, into_level: Level = AS_IS
) -> list[str]:
    """One FFmpeg run: the segment's sound into `segment.audio`, a PCM WAV lasting exactly
    as long as its pictures (to the nearest sample), the clip's loudness correction `level`
    applied; with `into`, its last samples crossfade into the next clip's first ones,
    corrected by `into_level`. Only the audio is decoded."""
    span, into = segment.span, segment.into
    frames = frame_count(effective_duration(span), settings.fps)
    samples = audio_sample_count(frames, settings)
    inputs = open_span(span)
    if into is None:
        graph = audio_filter(span, settings, samples, level)
    else:
        overlap = audio_sample_count(frame_count(effective_duration(into), settings.fps), settings)
        graph = ";".join(
            [
                audio_filter(span, settings, samples, level, 0, "a0"),
                audio_filter(into, settings, overlap, into_level, 1, "a1"),
                f"[a0][a1]acrossfade=ns={overlap}:c1=tri:c2=tri[a]",
            ]
        )
        inputs += open_span(into)
    wav = ["-c:a", "pcm_s16le", "-ar", str(settings.audio_rate), "-ac", "2"]
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        *PROGRESS_FLAGS,
        *inputs,
        "-filter_complex",
        graph,
        *["-map", "[a]", *wav, "-map_metadata", "-1", "-f", "wav", file_url(segment.audio)],
    ]


def copy_segment_argv(segment: Segment, settings: EncodeSettings) -> list[str]:
    """The stream-copy variant of `segment_argv` for a clip that already is what the export
    needs (`clip.can_copy`): its video packets are copied untouched (its sound is made by
    `segment_audio_argv`, as for any segment)."""
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        *PROGRESS_FLAGS,
        *clip_input(segment.span.path, max_pixels=max_pixels(segment.span)),
        "-map",
        "0:v:0",
        "-c:v",
        "copy",
        *settings.format.video.retag_copy,
        "-an",
        "-map_metadata",
        "-1",
        "-f",
        settings.format.segments.muxer,
        file_url(segment.video),
    ]


# --- rendering ----------------------------------------------------------------------------


def _run(
    argv: list[str], segment: Segment, ffmpeg: FFmpeg, on_progress: Progress | None
) -> int | None:
    """Run one of a segment's FFmpeg commands; its error names the clip."""
    try:
        return ffmpeg.run(
            argv, duration_s=effective_duration(segment.span), on_progress=on_progress
        )
    except FFmpegError as error:
        error.add_note(f"while encoding {segment.span.label}")
        raise


def render_pictures(
    segment: Segment,
    settings: EncodeSettings,
    *,
    copy: bool = False,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> int:
    """Render the segment's pictures into its file; return its frames. With `copy` (see
    `clip.can_copy`) the video is stream-copied instead of encoded. Setting the runner's
    `stop` kills FFmpeg and raises runner.Stopped; an FFmpegError raised here carries notes
    naming the clip and the transition."""
    frames = frame_count(effective_duration(segment.span), settings.fps)
    argv = copy_segment_argv(segment, settings) if copy else segment_argv(segment, settings)
    try:
        written = _run(argv, segment, ffmpeg, on_progress)
    except FFmpegError as error:
        if segment.into is not None:
            error.add_note(f"with the {segment.kind} into {segment.into.label}")
        raise
    if written == 0:  # FFmpeg can read nothing from a damaged file and still exit 0
        raise ClipError(
            segment.span.label,
            "no video could be decoded from the file; upload it again",
            FailureCause.INVALID_CLIP_FILE,
        )
    return frames


def render_sound(
    segment: Segment,
    settings: EncodeSettings,
    level: Level = AS_IS,
    into_level: Level = AS_IS,
    *,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> None:
    """Render the segment's sound into its WAV, exactly as long as its pictures, corrected
    by its clip's `level` (and the next clip's `into_level` over a transition)."""
    _run(segment_audio_argv(segment, settings, level, into_level), segment, ffmpeg, on_progress)


def render_segment(
    clip: Clip,
    settings: EncodeSettings,
    video: Path,
    audio: Path,
    *,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    copy: bool = False,
    captions: Path | None = None,
) -> int:
    """Both halves of a segment playing `clip` (no transition): its pictures into `video`,
    its sound into `audio`, brought to `settings.loudness` when there is one; returns the
    frames."""
    segment = Segment(0, 0, clip, video=video, audio=audio, captions=captions)
    frames = render_pictures(segment, settings, copy=copy, ffmpeg=ffmpeg)
    level = AS_IS
    if settings.loudness is not None and clip.info.has_audio:
        level = normalized(clip, settings.loudness, ffmpeg)
    render_sound(segment, settings, level, ffmpeg=ffmpeg)
    return frames
