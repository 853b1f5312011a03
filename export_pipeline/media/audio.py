"""The audio track: the sound of every segment (each clip brought to the loudness target),
joined, the music mixed under it and encoded once with the format's audio encoder, exactly
as long as the pictures; the join copies it."""

from __future__ import annotations

import os
from pathlib import Path

from export_pipeline.media.encoding import EncodeSettings
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg, Progress, progress_share
from export_pipeline.media.inputs import (
    COMMON_FLAGS,
    PROGRESS_FLAGS,
    file_url,
    open_input,
    write_concat_list,
)
from export_pipeline.media.loudness import AS_IS, loudness_levels
from export_pipeline.media.plan import RenderPlan
from export_pipeline.media.segment import Segment, render_sound
from export_pipeline.media.soundtrack import Music, mix_filter, mix_inputs

# Our own concat list of audio segments, and the segments it names (the concat demuxer
# copies the whitelist to the files it opens, so the segments' demuxer must be listed too).
AUDIO_LIST_FORMATS = "concat,wav"


def audio_track_argv(
    audio_list: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    music: tuple[list[str], str] | None = None,
) -> list[str]:
    """The audio track: the WAV segments of `audio_list` joined and encoded once with the
    format's audio encoder into its audio track file, which the join then copies.

    `music` is a soundtrack as (its input options, the graph mixing it as input 1 under the
    clips' audio, input 0, into `[a]`: `soundtrack.mix_filter`)."""
    audio = settings.format.audio
    inputs = open_input(audio_list, AUDIO_LIST_FORMATS, "-f", "concat")
    maps = ["-map", "0:a:0"]
    if music:
        inputs += music[0]
        maps = ["-filter_complex", music[1], "-map", "[a]"]
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        *PROGRESS_FLAGS,
        *inputs,
        *maps,
        "-c:a",
        audio.encoder,
        "-b:a",
        str(settings.audio_bitrate),
        "-ar",
        str(settings.audio_rate),
        "-ac",
        "2",
        "-map_metadata",
        "-1",
        "-f",
        audio.track.muxer,
        file_url(output),
    ]


def encode_audio_track(
    audio_segments: list[Path],
    output: Path,
    settings: EncodeSettings,
    samples: int,
    *,
    music: Music | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> None:
    """Join the WAV segments (in order, `samples` in all) and encode them once into the
    audio track `output`, the `music` mixed under them; `output` appears only when
    complete."""
    listing = write_concat_list(audio_segments, "audio")
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        mix = None
        if music is not None:
            graph = mix_filter(
                "0:a:0", "1:a:0", samples, settings.audio_rate, music.track, music.duration_s
            )
            mix = (mix_inputs(music.path, music.track.loop), graph)
        ffmpeg.run(
            audio_track_argv(listing, partial, settings, music=mix),
            duration_s=samples / settings.audio_rate,
            on_progress=on_progress,
        )
        os.replace(partial, output)
    finally:
        listing.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


def render_audio(
    plan: RenderPlan,
    pending: list[Segment],
    *,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> None:
    """Render the plan's audio track: the sound of the `pending` segments (the others' WAVs
    must already be in their files, from a cache), each clip corrected by one gain measured
    over its whole span (`loudness.loudness_levels`), then all of them joined and encoded
    once, with the plan's music, into `plan.audio.path`. Progress: measuring a quarter, the
    segments' sound a quarter, the encode half."""
    needed = {s.clip for s in pending} | {s.clip + 1 for s in pending if s.into is not None}
    levels = loudness_levels(plan.clips, needed, plan.settings.loudness, ffmpeg)
    if on_progress:
        on_progress(0.25)
    for n, segment in enumerate(pending):
        share = progress_share(on_progress, 0.25 + 0.25 * n / len(pending), 0.25 / len(pending))
        level = levels.get(segment.clip, AS_IS)
        into_level = levels.get(segment.clip + 1, AS_IS) if segment.into is not None else AS_IS
        render_sound(segment, plan.settings, level, into_level, ffmpeg=ffmpeg, on_progress=share)
    encode_audio_track(
        [segment.audio for segment in plan.segments],
        plan.audio.path,
        plan.settings,
        plan.samples,
        music=plan.music,
        ffmpeg=ffmpeg,
        on_progress=progress_share(on_progress, 0.5, 0.5),
    )
