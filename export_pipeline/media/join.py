"""The join: the video segments and the audio track copied into the published file, so audio
and video stay in sync at every seam, with the format's muxer options and an optional soft
caption track."""

from __future__ import annotations

import os
from pathlib import Path

from export_pipeline.domain.captions import Cue
from export_pipeline.media.captions import caption_document
from export_pipeline.media.encoding import EncodeSettings
from export_pipeline.media.ffmpeg import DEFAULT_FFMPEG, FFmpeg, Progress
from export_pipeline.media.inputs import (
    COMMON_FLAGS,
    PROGRESS_FLAGS,
    file_url,
    open_input,
    write_concat_list,
)
from export_pipeline.media.plan import RenderPlan


def concat_argv(
    video_list: Path,
    audio_track: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    subtitles: Path | None = None,
) -> list[str]:
    """Join the segments: the video segments of `video_list` and the audio track
    (`audio.audio_track_argv`), both by stream copy, into the format's file with its muxer
    options (e.g. the index at the front, so a player can start before the whole file has
    arrived). `subtitles` is a soft caption track: a file of the format's caption document
    (`SoftSubtitles`). Each input is opened with only its own demuxers."""
    target = settings.format
    inputs = [
        *open_input(video_list, f"concat,{target.segments.demuxers}", "-f", "concat"),
        *open_input(audio_track, target.audio.track.demuxers),
    ]
    maps = ["-map", "0:v:0", "-map", "1:a:0"]
    if subtitles:
        soft = target.subtitles
        inputs += open_input(subtitles, soft.demuxer, "-f", soft.demuxer)
        maps += ["-map", "2:s:0", "-c:s", soft.codec]
    return [
        "ffmpeg",
        *COMMON_FLAGS,
        *PROGRESS_FLAGS,
        *inputs,
        *maps,
        "-c:v",
        "copy",
        "-c:a",
        "copy",
        "-map_metadata",
        "-1",
        *target.muxer_args,
        "-f",
        target.file.muxer,
        file_url(output),
    ]


def join_segments(
    video_segments: list[Path],
    audio_track: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    duration_s: float | None = None,
    subtitles: tuple[Cue, ...] | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> None:
    """Join the video segments (in order) and the audio track into `output` by stream copy;
    `output` appears only when complete. The concat list (and the caption track made of
    `subtitles`) is written next to the segments and removed afterwards; `duration_s` is
    the expected total, for progress."""
    written: list[Path] = []
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        written.append(write_concat_list(video_segments, "video"))
        output.parent.mkdir(parents=True, exist_ok=True)
        track = None
        if subtitles:
            soft = settings.format.subtitles
            track = video_segments[0].parent / f"captions.{soft.extension}"
            track.write_text(caption_document(soft.document, subtitles), encoding="utf-8")
            written.append(track)
        ffmpeg.run(
            concat_argv(written[0], audio_track, partial, settings, subtitles=track),
            duration_s=duration_s,
            on_progress=on_progress,
        )
        os.replace(partial, output)
    finally:
        for path in [*written, partial]:
            path.unlink(missing_ok=True)


def join_planned(
    plan: RenderPlan,
    output: Path,
    *,
    subtitles: tuple[Cue, ...] | None = None,
    ffmpeg: FFmpeg = DEFAULT_FFMPEG,
    on_progress: Progress | None = None,
) -> None:
    """Join the plan's rendered segments (all in their files) and its audio track into
    `output`."""
    join_segments(
        [segment.video for segment in plan.segments],
        plan.audio.path,
        output,
        plan.settings,
        duration_s=plan.frames / plan.settings.fps,
        subtitles=subtitles,
        ffmpeg=ffmpeg,
        on_progress=on_progress,
    )
