"""`encoded_video`: the clips trimmed, fitted to the frame, joined and encoded, as a graph
whose segments are steps of their own, so the run's executor spreads one export over its
workers (`definitions.build_executor`):

    plan ──> audio track + segment × N (dynamic: one per part still to render) ──> join

The plan step reads the clip manifest, chooses the encoder settings, plans the segments
(`media.plan.plan_render`), records them at `work/exp-<id>/plan.json` and yields the audio
track and every segment the segment cache lacks. A segment step renders its parts: pictures
into the segment cache (the hand-off between machines; rendering is idempotent through it),
the audio track into `work/exp-<id>/audio-<run>.<ext>`. The join step copies both into
`work/exp-<id>/encoded.<ext>` with a JSON record for `published_video`. A retried step uses
safer settings (`encode_settings(attempt=...)`); as a join needs one set, the join renders
the other segments again with them (the cache keeps both).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dagster import (
    AssetIn,
    DynamicOut,
    DynamicOutput,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    graph_asset,
    op,
)

from export_pipeline.defs.export.clips import downloaded_clips_key
from export_pipeline.defs.export.steps import ExportStep, export_step
from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.defs.resources import AppDatabase, MediaTools, StorageResource
from export_pipeline.domain.captions import Cue, parse_captions
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.formats import output_format, segment_content_type
from export_pipeline.domain.layout import (
    audio_track_key,
    encoded_key,
    encoded_record_key,
    manifest_key,
    plan_key,
    segment_cache_key,
)
from export_pipeline.domain.request import ClipSpec, ExportSpec
from export_pipeline.io.storage import ObjectNotFound, Storage
from export_pipeline.media.captions import BurnIn
from export_pipeline.media.clip import Clip, Transition
from export_pipeline.media.encoding import EncodeSettings, encode_settings
from export_pipeline.media.execute import render_parts
from export_pipeline.media.frame import choose_frame_rate
from export_pipeline.media.inputs import RemoteFile, Source
from export_pipeline.media.plan import Renderable, RenderOptions, RenderPlan, plan_render
from export_pipeline.media.probe import MediaInfo, probe
from export_pipeline.media.render import RenderResult, render_video
from export_pipeline.media.segment import Segment
from export_pipeline.media.soundtrack import Music

# The encode's share of the progress bar (see tracking), cut between its steps: planning
# (fetching and measuring), the segments (summed over all of them, wherever they run) and
# the join (a stream copy: about 4 % of the encode's time, bench_eta).
PROGRESS_BAND = (10, 97)
PLAN_BAND = (10, 12)
SEGMENTS_BAND = (12, 94)
JOIN_BAND = (94, 97)
STEP_NAME = "encoded_video"


class StorageSegmentCache:
    """Rendered segments kept in our storage, their pictures and their sound apart
    (`segments/<clip sha256>/<trim>-<length>-<settings>.mp4`, `...-a<audio settings>.wav`:
    `Segment.video_name`, `Segment.audio_name`), shared by every export and every worker:
    the hand-off from the segment steps to the join, and what lets a re-export or backfill
    render only the clips that changed."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def has(self, name: str | None) -> bool:
        return bool(name) and self.storage.exists(segment_cache_key(name))

    def fetch(self, name: str, out: Path) -> bool:
        try:
            self.storage.get_file(segment_cache_key(name), out)
        except ObjectNotFound:
            return False
        return True

    def store(self, name: str, path: Path) -> None:
        extension = path.suffix.removeprefix(".")
        kind = "audio/wav" if extension == "wav" else segment_content_type(extension)
        self.storage.put_file(path, segment_cache_key(name), content_type=kind)


def _transition(clip: ClipSpec) -> Transition | None:
    if clip.transition is None or clip.transition.kind == "cut":
        return None
    return Transition(clip.transition.kind, clip.transition.duration)


def _music(spec: ExportSpec, manifest: dict, work: Path) -> tuple[Music | None, str | None]:
    """The request's soundtrack, archived by downloaded_clips (to be fetched into `work`
    where the audio track is rendered), and its key in storage."""
    if spec.soundtrack is None:
        return None, None
    entry = manifest.get("soundtrack")
    if not entry or entry.get("url") != spec.soundtrack.url:
        raise ExportFailure(
            "the soundtrack is not in the clip manifest: re-run downloaded_clips",
            cause=FailureCause.STORAGE,
            permanent=True,
        )
    return Music(work / "soundtrack.audio", spec.soundtrack.track, entry.get("duration")), entry[
        "key"
    ]


def _captions(spec: ExportSpec, manifest: dict) -> tuple[BurnIn | None, tuple[Cue, ...] | None]:
    """The request's captions (inline, or as downloaded_clips fetched them), to burn in or
    to add as a soft track."""
    if spec.captions is None:
        return None, None
    fetched = manifest.get("captions") or {}
    text = spec.captions.text if spec.captions.text is not None else fetched.get("text")
    if text is None:
        raise ExportFailure(
            "the captions are missing from the clip manifest: re-run downloaded_clips",
            cause=FailureCause.STORAGE,
            permanent=True,
        )
    cues = tuple(parse_captions(text, spec.captions.kind))
    if spec.captions.burn_in:
        return BurnIn(cues, spec.captions.style), None
    return None, cues


@dataclass
class Encode:
    """What every step of one encode works from: the request's clips (their sources
    fetched into `work` only where the step needs them), the manifest, the settings at an
    attempt, and the render options (captions, soundtrack, segment length)."""

    step: ExportStep
    storage: Storage
    media: MediaTools
    work: Path
    manifest: dict
    clips: list[Clip]
    settings: EncodeSettings
    options: RenderOptions
    music_key: str | None = None

    def plan(self) -> RenderPlan:
        return plan_render(self.clips, self.settings, self.work, self.options)

    def fetch_sources(self, clips: set[int]) -> None:
        """Bring the archived files of `clips` (0-based) into `work`."""
        entries = {entry["position"]: entry for entry in self.manifest["clips"]}
        for n in sorted(clips):
            path = self.clips[n].path
            if isinstance(path, Path) and not path.exists():
                spec = self.step.spec.ordered_clips[n]
                self.storage.get_file(entries[spec.position]["key"], path)

    def fetch_music(self) -> None:
        """Bring the archived soundtrack into `work` (for the audio track)."""
        music = self.options.music
        if music is not None and self.music_key and not music.path.exists():
            self.storage.get_file(self.music_key, music.path)


def _clips_of(segments: list[Segment]) -> set[int]:
    """The clips (0-based) whose sources rendering `segments` reads: each segment's own, and
    the next one for a transition."""
    return {s.clip for s in segments} | {s.clip + 1 for s in segments if s.into is not None}


def _manifest(step: ExportStep, storage: Storage) -> dict:
    try:
        return storage.get_json(manifest_key(step.partition_key))
    except ObjectNotFound as exc:
        raise ExportFailure(
            "the clip manifest is missing: materialize downloaded_clips for this partition first",
            cause=FailureCause.STORAGE,
            permanent=True,
        ) from exc


def _clip(
    spec: ClipSpec,
    entry: dict | None,
    storage: Storage,
    media: MediaTools,
    work: Path,
    stream: bool,
) -> Clip:
    """The request's clip as its manifest entry archived it. Read in place where storage is
    a filesystem here, or streamed (`stream`) where a step needs only its span of a large
    clip: one long clip's chunks are many steps, and each would otherwise copy the whole
    clip; else fetched into `work` when needed (`Encode.fetch_sources`)."""
    if entry is None or entry["url"] != spec.url:
        raise ExportFailure(
            f"{spec.label} is not in the clip manifest: re-run downloaded_clips",
            cause=FailureCause.STORAGE,
            permanent=True,
        )
    info = MediaInfo.from_record(entry.get("media"))
    local: Source | None = storage.local_file(entry["key"])
    big = entry.get("bytes", 0) > media.stream_sources_mb * 1024**2 > 0
    if local is None and stream and big and info is not None:
        local = RemoteFile(storage.url(entry["key"]))
    local = local or work / f"source-{spec.position:04d}{Path(entry['key']).suffix}"
    if info is None:  # an older manifest: probe the file itself
        if not local.exists():
            storage.get_file(entry["key"], local)
        info = probe(local, media.runner())
    return Clip(
        path=local,
        trim_start=spec.trim_start,
        duration=spec.duration,
        info=info,
        label=spec.label,
        content_hash=entry["sha256"],
        transition=_transition(spec),
    )


def open_encode(
    step: ExportStep,
    storage: Storage,
    media: MediaTools,
    work: Path,
    attempt: int,
    stream: bool = False,
) -> Encode:
    """The encode as `step` sees it, at `attempt` (0: the requested settings). Clip sources
    are only fetched where the manifest has no probe of them; with `stream`, clips over
    `stream_sources_mb` in remote storage will be read over HTTP, not fetched."""
    spec = step.spec
    manifest = _manifest(step, storage)
    entries = {entry["position"]: entry for entry in manifest["clips"]}
    clips = [
        _clip(c, entries.get(c.position), storage, media, work, stream) for c in spec.ordered_clips
    ]
    burn, soft = _captions(spec, manifest)
    music, music_key = _music(spec, manifest, work)
    options = RenderOptions(
        captions=burn,
        music=music,
        subtitles=soft,
        max_segment_s=media.max_segment_s,
        parallel=media.segment_workers,
    )
    fps = choose_frame_rate([c.info.fps for c in clips], cap=Fraction(media.max_fps))
    settings = encode_settings(
        spec.resolution,
        spec.aspect_ratio,
        spec.quality,
        fps,
        media.x264_preset,
        attempt,
        format=spec.format,
        loudness=media.loudness_lufs if spec.audio_normalize else None,
    )
    return Encode(step, storage, media, work, manifest, clips, settings, options, music_key)


# ---- the steps


def plan_encode(
    step: ExportStep, media: MediaTools, storage: Storage, attempt: int
) -> list[tuple[str, list[int]]]:
    """The plan step's work; returns the parts to render (their indexes: the audio track,
    then the segments missing from the cache), in batches of `segments_per_step` (0: all
    in one), one segment step each, with its name."""
    started = time.time()
    with media.temp_dir(f"export-{step.partition_key}-plan") as scratch:
        encode = open_encode(step, storage, media, Path(scratch), attempt)
        plan = encode.plan()
        cache = StorageSegmentCache(storage)
        cached = [cache.has(s.video_name) for s in plan.segments]
    pending = [s.index for s, hit in zip(plan.segments, cached, strict=True) if not hit]
    record = {
        "attempt": attempt,
        "keys": [s.key for s in plan.segments],
        "settings": str(encode.settings),
        "cached": len(plan.segments) - len(pending),
        "started_at": started,  # when the encode began, for its total time
    }
    storage.put_json(plan_key(step.partition_key), record)
    step.store.start_segments(
        step.request_id,
        [part.duration for part in plan.parts],
        [1.0 if hit else 0.0 for hit in cached] + [0.0],
    )
    step.context.log.info(
        f"{step.partition_key}: {len(plan.segments)} segments at {encode.settings.width}x"
        f"{encode.settings.height} {float(encode.settings.fps):.3f} fps (attempt "
        f"{attempt + 1}): {len(pending)} to render, {len(plan.segments) - len(pending)} "
        "cached; the audio track beside them"
    )
    parts = [plan.audio.index, *pending]  # the audio track first: it takes the longest
    per_step = media.segments_per_step or len(parts)
    batches = [parts[n : n + per_step] for n in range(0, len(parts), per_step)]
    return [(_step_name(batch, plan.audio.index), batch) for batch in batches]


def _step_name(batch: list[int], audio: int) -> str:
    """A segment step's mapping key: `audio`, `segment_0003`, or for a batch
    `segments_0000_0011`, with `audio_` in front when the audio track is in it."""
    segments = [n for n in batch if n != audio]
    name = "audio" if audio in batch else ""
    if len(segments) == 1:
        name = "_".join(filter(None, [name, f"segment_{segments[0]:04d}"]))
    elif segments:
        name = "_".join(filter(None, [name, f"segments_{segments[0]:04d}_{segments[-1]:04d}"]))
    return name


def _batch(
    encode: Encode, plan: RenderPlan, wanted: list[Renderable], cache: StorageSegmentCache
) -> tuple[list[Renderable], list[Segment]]:
    """What a segment step renders of `wanted`: the segments whose pictures the cache lacks
    (one already there, from a retried run or another export, is done) and the audio track,
    first, with the sound of the segments the cache lacks; their sources fetched."""
    todo: list[Renderable] = [
        p for p in wanted if p is not plan.audio and not cache.has(p.video_name)
    ]
    sounds = []
    if plan.audio in wanted:
        sounds = [s for s in plan.segments if not cache.fetch(s.audio_name or "", s.audio)]
        encode.fetch_music()
        todo.insert(0, plan.audio)
    encode.fetch_sources(_clips_of([p for p in todo if p is not plan.audio] + sounds))
    return todo, sounds


def _reporter(step: ExportStep, todo: list[Renderable]) -> Callable[[], None]:
    """Reports the parts of `todo` that moved since the last report (called twice a
    second) to the row's progress, summed over every segment step."""
    reported: dict[int, float] = {}

    def report() -> None:
        moved = {p.index: p.done for p in todo if reported.get(p.index) != p.done}
        if not moved:
            return
        reported.update(moved)
        whole = step.store.segment_progress(step.request_id, moved)
        if whole is not None:
            step.progress(whole)

    return report


def _store_audio_track(
    step: ExportStep,
    storage: Storage,
    plan: RenderPlan,
    cache: StorageSegmentCache,
    sounds: list[Segment],
) -> str:
    """Cache the segments' sound rendered here and put the audio track in work/; its key."""
    for segment in sounds:
        if segment.audio_name:
            cache.store(segment.audio_name, segment.audio)
    file = plan.settings.format.audio.track
    track = audio_track_key(step.partition_key, step.context.run_id, file.extension)
    storage.put_file(plan.audio.path, track, content_type=file.content_type)
    step.context.log.info(
        f"{step.partition_key}: the audio track rendered ({len(sounds)} of "
        f"{len(plan.segments)} segments' sound rendered, the others cached)"
    )
    return track


def render_batch(
    step: ExportStep, media: MediaTools, storage: Storage, indexes: list[int], attempt: int
) -> dict:
    """The segment step's work: render parts `indexes` of the plan (one, or several side by
    side, `segments_per_step`): segments' pictures into the cache, the audio track into
    work/. Returns the attempt whose settings the pictures used (the plan's, or a safer
    one on this step's retry; None without pictures) and the audio track's key (None
    without it)."""
    record = storage.get_json(plan_key(step.partition_key))
    attempt = max(attempt, int(record["attempt"]))
    name = f"{indexes[0]}" if len(indexes) == 1 else f"{indexes[0]}-{indexes[-1]}"
    with media.temp_dir(f"export-{step.partition_key}-segment-{name}") as scratch:
        # Pictures alone read a span of each clip: large remote clips are streamed. The
        # audio track reads every clip whole: it fetches them.
        pictures_only = max(indexes) < len(record["keys"])
        encode = open_encode(step, storage, media, Path(scratch), attempt, pictures_only)
        plan = encode.plan()
        if [s.key for s in plan.segments] != record["keys"] and attempt == record["attempt"]:
            raise ExportFailure(
                "the request changed after its encode was planned: run the export again",
                cause=FailureCause.OTHER,
                permanent=True,
            )
        cache = StorageSegmentCache(storage)
        wanted = [plan.parts[i] for i in indexes]
        todo, sounds = _batch(encode, plan, wanted, cache)
        report = _reporter(step, todo)

        def finished(segment: Segment) -> None:
            if segment.video_name:
                cache.store(segment.video_name, segment.video)
            step.context.log.info(f"{step.partition_key}: {segment.label} rendered ({segment.key})")

        render_parts(
            plan, todo, audio_pending=sounds, parallel=media.segment_workers, report=report,
            finished=finished, ffmpeg=media.runner(),
        )  # fmt: skip
        report()
        track = None
        if plan.audio in wanted:
            track = _store_audio_track(step, storage, plan, cache, sounds)
    pictures = any(p is not plan.audio for p in wanted)
    return {"attempt": attempt if pictures else None, "audio_track": track}


def _render_rest(encode: Encode, tracks: list[str], output: Path) -> RenderResult:
    """The join's render: normally nothing is left to render; after a segment's retry with
    safer settings, the others are rendered again here with those (`render_video` renders
    only what the cache lacks, so the sources of those clips alone are fetched), and the
    audio track too if no segment step left it."""
    cache = StorageSegmentCache(encode.storage)
    plan = encode.plan()
    missing = [s for s in plan.segments if not cache.has(s.video_name)]
    track = encode.work / f"audio-track.{encode.settings.format.audio.track.extension}"
    try:
        encode.storage.get_file(tracks[0], track)
    except (IndexError, ObjectNotFound):
        track = None  # not rendered (or gone): rendered here
        missing += [s for s in plan.segments if not cache.has(s.audio_name)]
        encode.fetch_music()
    encode.fetch_sources(_clips_of(missing))
    return render_video(
        encode.clips,
        encode.settings,
        encode.work / "segments",
        output,
        encode.options,
        ffmpeg=encode.media.runner(),
        cache=cache,
        on_progress=encode.step.progress,
        audio_track=track,
    )


def _summary(encode: Encode, result: RenderResult, record: dict, attempt: int, key: str) -> dict:
    """The encoded video's record, for `published_video` and the step's metadata."""
    settings = encode.settings
    return {
        "key": key,
        "format": settings.format.name,
        "bytes": result.size_bytes,
        "duration_s": result.duration_s,
        "frames": result.frames,
        "width": settings.width,
        "height": settings.height,
        "fps": str(settings.fps),
        "settings": {k: str(v) for k, v in settings.record().items()},
        "attempt": attempt + 1,
        "clip_count": len(encode.clips),
        "segments": result.segments,
        "reused_segments": int(record["cached"]),
        "rendered_in_join": result.segments - result.reused_segments,
        "stream_copy": result.stream_copy,
        "seconds": round(time.time() - float(record["started_at"]), 2),  # plan to join
    }


def join_encode(step: ExportStep, media: MediaTools, storage: Storage, parts: list[dict]) -> Output:
    """The join step's work: the segments (rendered by the segment steps, normally all in
    the cache) and the audio track joined into the encoded video and its record."""
    record = storage.get_json(plan_key(step.partition_key))
    attempts = [int(p["attempt"]) for p in parts if p.get("attempt") is not None]
    attempt = max([int(record["attempt"]), *attempts])
    tracks = [p["audio_track"] for p in parts if p.get("audio_track")]
    target = output_format(step.spec.format)
    key = encoded_key(step.partition_key, target.extension)
    with media.temp_dir(f"export-{step.partition_key}-join") as scratch:
        encode = open_encode(step, storage, media, Path(scratch), attempt)
        result = _render_rest(encode, tracks, Path(scratch) / f"encoded.{target.extension}")
        storage.move_file(result.output, key, content_type=target.content_type)
    for used in tracks:
        storage.delete(used)
    step.store.end_segments(step.request_id)
    summary = _summary(encode, result, record, attempt, key)
    storage.put_json(encoded_record_key(step.partition_key), summary)
    return Output(
        None,
        metadata={
            "duration_s": round(result.duration_s, 3),
            "bytes": result.size_bytes,
            "frame_size": f"{summary['width']}x{summary['height']}",
            "fps": float(encode.settings.fps),
            "frames": result.frames,
            "encoder_settings": MetadataValue.json(summary["settings"]),
            "attempt": attempt + 1,
            "segments": result.segments,
            "reused_segments": summary["reused_segments"],
            "rendered_in_join": summary["rendered_in_join"],
            "stream_copy": result.stream_copy,
            "seconds": summary["seconds"],
        },
    )


def build_encoded_video(retry_policy: RetryPolicy):
    # Over 60 lines: the three ops and the graph asset are defined together, each closing
    # over the retry policy.
    retries = retry_policy.max_retries

    @op(
        name="encoded_video_plan",
        ins={"downloaded_clips": In(Nothing)},
        out=DynamicOut(list[int]),
        retry_policy=retry_policy,
        description="Plans the segments; one output for the audio track and one per segment "
        "to render.",
    )
    def plan_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
    ):
        with export_step(context, app_db, STEP_NAME, PLAN_BAND, retries) as step:
            attempt = context.retry_number
            pending = plan_encode(step, media, storage.open(), attempt)
        for key, batch in pending:
            yield DynamicOutput(batch, mapping_key=key)

    @op(
        name="encoded_video_segment",
        retry_policy=retry_policy,
        description="Renders a segment's pictures into the segment cache in storage, or the "
        "audio track (or a batch of such parts).",
    )
    def segment_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
        indexes: list[int],
    ) -> dict:
        # One of many: the band is full only when all of them are (`segment_progress`).
        with export_step(
            context, app_db, STEP_NAME, SEGMENTS_BAND, retries, fills_band=False
        ) as step:
            return render_batch(step, media, storage.open(), indexes, context.retry_number)

    @op(
        name="encoded_video_join",
        out=Out(Nothing),
        retry_policy=retry_policy,
        description="Joins the segments and the audio track by stream copy into the video.",
    )
    def join_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
        parts: list[dict],
    ):
        with export_step(context, app_db, STEP_NAME, JOIN_BAND, retries) as step:
            return join_encode(step, media, storage.open(), parts)

    @graph_asset(
        name="encoded_video",
        partitions_def=export_partitions,
        group_name="export",
        ins={"downloaded_clips": AssetIn(key=downloaded_clips_key, dagster_type=Nothing)},
        description=(
            "The clips trimmed, fitted, joined and encoded in the request's format, one step "
            "per segment."
        ),
        kinds={"ffmpeg"},
    )
    def encoded_video(downloaded_clips):
        segments = plan_op(downloaded_clips).map(segment_op)
        return join_op(segments.collect())

    return encoded_video
