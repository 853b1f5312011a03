"""`encoded_video`: the clips trimmed, fitted to the frame, joined and encoded.

A graph-backed asset whose segments are steps of their own, so the run's Dagster executor
(in-process by default, multiprocess on one machine, Docker or Kubernetes across machines:
see `definitions.build_executor`) spreads one export over its workers:

    plan ──> segment × N (dynamic: one per segment not yet rendered) ──> join

- `encoded_video_plan` reads the partition's clip manifest (never the CDN), chooses the
  encoder settings, plans the segments (`media.render.plan_render`: one per clip, or per
  chunk of at most `EXPORT_SEGMENT_MAX_S` of a long one, each ending in the transition
  out of it), measures the loudness of the clips it must render, records all that at
  `work/exp-<id>/plan.json` and yields one dynamic output per segment missing from the
  segment cache.
- `encoded_video_segment` fetches its clip (and the next one, for a transition), renders its
  segment and puts it in the segment cache in storage: the hand-off, as steps on other
  machines share nothing else. Rendering is idempotent through that cache.
- `encoded_video_join` joins the segments by stream copy into `work/exp-<id>/encoded.<ext>`
  with a small JSON record beside it for `published_video`.

A retried step uses safer encoder settings (`encode_settings(attempt=...)`). Segments of one
video must share their settings, so when a segment's retry used safer ones, the join renders
the others again with them (the cache keeps both).
"""

import errno
import time
from dataclasses import asdict, dataclass
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

from export_pipeline.clips.assets import downloaded_clips_key, manifest_key
from export_pipeline.intake.partitions import export_partitions
from export_pipeline.intake.spec import ClipSpec, ExportSpec
from export_pipeline.media.captions import Cue, parse_captions
from export_pipeline.media.commands import EncodeSettings, encode_settings
from export_pipeline.media.layout import choose_frame_rate, output_format
from export_pipeline.media.probe import InvalidMedia, MediaInfo, probe
from export_pipeline.media.render import (
    BurnIn,
    ClipError,
    Music,
    RenderInput,
    RenderPlan,
    Transition,
    loudness_levels,
    plan_render,
    render_segments,
    render_video,
)
from export_pipeline.media.runner import FFmpegError
from export_pipeline.resources import AppDatabase, MediaTools, StorageResource
from export_pipeline.storage import ObjectNotFound, Storage
from export_pipeline.tracking import ExportError, ExportStep, export_step

# The encode's share of the progress bar (see tracking), cut between its steps: planning
# (fetching and measuring), the segments (summed over all of them, wherever they run) and
# the join (a stream copy: about 4 % of the encode's time, bench_eta).
PROGRESS_BAND = (10, 97)
PLAN_BAND = (10, 12)
SEGMENTS_BAND = (12, 94)
JOIN_BAND = (94, 97)
STEP_NAME = "encoded_video"


def encoded_key(partition_key: str, extension: str = "mp4") -> str:
    return f"work/{partition_key}/encoded.{extension}"


def encoded_record_key(partition_key: str) -> str:
    return f"work/{partition_key}/encoded.json"


def plan_key(partition_key: str) -> str:
    return f"work/{partition_key}/plan.json"


class StorageSegmentCache:
    """Rendered segments kept in our storage (`segments/<clip sha256>/<trim>-<length>-<mode>`),
    shared by every export and every worker: the hand-off from the segment steps to the
    join, and what lets a re-export or backfill at the same settings render only the clips
    that changed."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def has(self, key: str, container: str) -> bool:
        # A segment counts as cached once its video exists (`store` writes it last).
        return self.storage.exists(f"segments/{key}.{container}")

    def fetch(self, key: str, video_out: Path, audio_out: Path) -> bool:
        try:
            self.storage.get_file(f"segments/{key}{video_out.suffix}", video_out)
            self.storage.get_file(f"segments/{key}.wav", audio_out)
        except ObjectNotFound:
            return False
        return True

    def store(self, key: str, video_out: Path, audio_out: Path) -> None:
        # Audio first: a segment counts as cached once its video exists.
        self.storage.put_file(audio_out, f"segments/{key}.wav", content_type="audio/wav")
        kind = "video/webm" if video_out.suffix == ".webm" else "video/mp4"
        self.storage.put_file(video_out, f"segments/{key}{video_out.suffix}", content_type=kind)


def render_error(exc: Exception) -> ExportError:
    """What an exception from rendering means for the export: worth another attempt (FFmpeg
    crashed, the disk filled up, storage blinked) or certain to happen again (a clip that
    cannot be rendered, an archived clip that is gone, a setting that cannot work)."""
    if isinstance(exc, ClipError | InvalidMedia):
        return ExportError(str(exc), permanent=True)
    if isinstance(exc, ObjectNotFound):
        return ExportError(
            f"{exc.key} is missing from storage: materialize downloaded_clips for this "
            "partition again",
            permanent=True,
        )
    if isinstance(exc, FFmpegError):  # a limit hit once is hit again: no retry for that
        return ExportError(f"FFmpeg failed: {exc}", permanent=exc.over_limit)
    if isinstance(exc, OSError):
        permanent = exc.errno in (errno.ENAMETOOLONG, errno.EINVAL)
        return ExportError(f"{type(exc).__name__}: {exc}", permanent=permanent)
    if isinstance(exc, ValueError | TypeError | KeyError):  # bad data or configuration
        return ExportError(f"cannot encode: {type(exc).__name__}: {exc}", permanent=True)
    return ExportError(f"{type(exc).__name__}: {exc}", permanent=False)


def _transition(clip: ClipSpec) -> Transition | None:
    if clip.transition is None or clip.transition.kind == "cut":
        return None
    return Transition(clip.transition.kind, clip.transition.duration)


def _music(spec: ExportSpec, manifest: dict, storage: Storage, work: Path) -> Music | None:
    """The request's soundtrack, archived by downloaded_clips, fetched for the join."""
    if spec.soundtrack is None:
        return None
    entry = manifest.get("soundtrack")
    if not entry or entry.get("url") != spec.soundtrack.url:
        raise ExportError(
            "the soundtrack is not in the clip manifest: re-run downloaded_clips", permanent=True
        )
    local = work / "soundtrack.audio"
    storage.get_file(entry["key"], local)
    return Music(local, spec.soundtrack.track, entry.get("duration"))


def _captions(spec: ExportSpec, manifest: dict) -> tuple[BurnIn | None, tuple[Cue, ...] | None]:
    """The request's captions (inline, or as downloaded_clips fetched them), to burn in or
    to add as a soft track."""
    if spec.captions is None:
        return None, None
    fetched = manifest.get("captions") or {}
    text = spec.captions.text if spec.captions.text is not None else fetched.get("text")
    if text is None:
        raise ExportError(
            "the captions are missing from the clip manifest: re-run downloaded_clips",
            permanent=True,
        )
    cues = tuple(parse_captions(text, spec.captions.kind))
    if spec.captions.burn_in:
        return BurnIn(cues, spec.captions.style), None
    return None, cues


@dataclass
class Encode:
    """What every step of one encode works from: the request's clips as render inputs (the
    sources fetched into `work` only where the step needs them), the manifest, the
    settings at an attempt, and the captions and soundtrack."""

    step: ExportStep
    storage: Storage
    media: MediaTools
    work: Path
    manifest: dict
    inputs: list[RenderInput]
    settings: EncodeSettings
    burn: BurnIn | None
    soft: tuple[Cue, ...] | None

    def plan(self) -> RenderPlan:
        return plan_render(
            self.inputs,
            self.settings,
            self.work,
            captions=self.burn,
            max_segment_s=self.media.max_segment_s,
        )

    def fetch_sources(self, clips: set[int]) -> None:
        """Bring the archived files of `clips` (0-based) into `work`."""
        entries = {entry["position"]: entry for entry in self.manifest["clips"]}
        for n in sorted(clips):
            inp = self.inputs[n]
            if not inp.path.exists():
                clip = self.step.spec.ordered_clips[n]
                self.storage.get_file(entries[clip.position]["key"], inp.path)


def open_encode(
    step: ExportStep, storage: Storage, media: MediaTools, work: Path, attempt: int
) -> Encode:
    """The encode as `step` sees it, at `attempt` (0: the requested settings). Clip sources
    are only fetched where the manifest has no probe of them."""
    spec = step.spec
    try:
        manifest = storage.get_json(manifest_key(step.partition_key))
    except ObjectNotFound as exc:
        raise ExportError(
            "the clip manifest is missing: materialize downloaded_clips for this partition first",
            permanent=True,
        ) from exc
    entries = {entry["position"]: entry for entry in manifest["clips"]}
    inputs = []
    for clip in spec.ordered_clips:
        entry = entries.get(clip.position)
        if entry is None or entry["url"] != clip.url:
            raise ExportError(
                f"{clip.label} is not in the clip manifest: re-run downloaded_clips",
                permanent=True,
            )
        local = work / f"source-{clip.position:04d}.mp4"
        info = MediaInfo.from_record(entry.get("media"))
        if info is None:  # an older manifest: probe the file itself
            storage.get_file(entry["key"], local)
            info = probe(local, ffprobe=media.ffprobe, limits=media.limits())
        inputs.append(
            RenderInput(
                path=local,
                trim_start=clip.trim_start,
                duration=clip.duration,
                info=info,
                label=clip.label,
                content_hash=entry["sha256"],
                transition=_transition(clip),
            )
        )
    burn, soft = _captions(spec, manifest)
    fps = choose_frame_rate([i.info.fps for i in inputs], cap=Fraction(media.max_fps))
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
    return Encode(step, storage, media, work, manifest, inputs, settings, burn, soft)


def _guarded(step_call):
    """Run a step's work, turning what rendering raises into an ExportError."""
    try:
        return step_call()
    except ExportError:
        raise
    except Exception as exc:
        raise render_error(exc) from exc


# ---- the steps


def plan_encode(step: ExportStep, media: MediaTools, storage: Storage, attempt: int):
    """The plan step's work; returns the segments to render (their indexes), in batches of
    `segments_per_step` (0: all in one), one segment step each."""
    started = time.time()
    with media.temp_dir(f"export-{step.partition_key}-plan") as scratch:
        encode = open_encode(step, storage, media, Path(scratch), attempt)
        plan = encode.plan()
        cache = StorageSegmentCache(storage)
        container = encode.settings.container
        cached = [bool(s.key) and cache.has(s.key, container) for s in plan.segments]
        pending = [s for s, hit in zip(plan.segments, cached, strict=True) if not hit]
        # Each clip's loudness is measured once here, over its whole span, for all its
        # segments wherever they run.
        needed = {s.clip for s in pending} | {s.clip + 1 for s in pending if s.b is not None}
        if encode.settings.loudness is not None:
            encode.fetch_sources(needed)
        step.progress(0.5)
        levels = loudness_levels(
            plan, pending, media.ffmpeg, media.ffmpeg_timeout_s, media.limits()
        )
    record = {
        "attempt": attempt,
        "keys": [s.key for s in plan.segments],
        "levels": {str(n): [gain, limiter] for n, (gain, limiter) in levels.items()},
        "settings": str(encode.settings),
        "cached": len(plan.segments) - len(pending),
        "started_at": started,  # when the encode began, for its total time
    }
    storage.put_json(plan_key(step.partition_key), record)
    step.store.start_segments(
        step.request_id,
        [s.duration for s in plan.segments],
        [1.0 if hit else 0.0 for hit in cached],
    )
    step.context.log.info(
        f"{step.partition_key}: {len(plan.segments)} segments at {encode.settings.width}x"
        f"{encode.settings.height} {float(encode.settings.fps):.3f} fps (attempt "
        f"{attempt + 1}): {len(pending)} to render, {len(plan.segments) - len(pending)} cached"
    )
    per_step = media.segments_per_step or len(pending) or 1
    return [[s.index for s in pending[n : n + per_step]] for n in range(0, len(pending), per_step)]


def render_batch(
    step: ExportStep, media: MediaTools, storage: Storage, indexes: list[int], attempt: int
) -> int:
    """The segment step's work: render segments `indexes` (one, or several side by side,
    `segments_per_step`) into the cache; returns the attempt whose settings it used (the
    plan's, or a safer one on this step's retry)."""
    record = storage.get_json(plan_key(step.partition_key))
    attempt = max(attempt, int(record["attempt"]))
    levels = {int(n): (float(g), bool(lim)) for n, (g, lim) in record["levels"].items()}
    name = f"{indexes[0]}" if len(indexes) == 1 else f"{indexes[0]}-{indexes[-1]}"
    with media.temp_dir(f"export-{step.partition_key}-segment-{name}") as scratch:
        encode = open_encode(step, storage, media, Path(scratch), attempt)
        plan = encode.plan()
        if [s.key for s in plan.segments] != record["keys"] and attempt == record["attempt"]:
            raise ExportError(
                "the request changed after its encode was planned: run the export again",
                permanent=True,
            )
        cache = StorageSegmentCache(storage)
        todo = [
            plan.segments[i]
            for i in indexes
            if not (
                plan.segments[i].key and cache.has(plan.segments[i].key, plan.settings.container)
            )
        ]  # a segment already in the cache (a retried run, another export's) is done
        needed = {s.clip for s in todo} | {s.clip + 1 for s in todo if s.b is not None}
        encode.fetch_sources(needed)

        reported: dict[int, float] = {}

        def report() -> None:
            # Only the segments that moved since the last report (this runs twice a second).
            moved = {s.index: s.done for s in todo if reported.get(s.index) != s.done}
            if not moved:
                return
            reported.update(moved)
            whole = step.store.segment_progress(step.request_id, moved)
            if whole is not None:
                step.progress(whole)

        def finished(segment) -> None:
            if segment.key:
                cache.store(segment.key, segment.video, segment.audio)
            step.context.log.info(f"{step.partition_key}: {segment.label} rendered ({segment.key})")

        render_segments(
            plan, todo, levels, parallel=media.segment_workers, report=report,
            finished=finished, ffmpeg=media.ffmpeg, timeout_s=media.ffmpeg_timeout_s,
            limits=media.limits(),
        )  # fmt: skip
        report()
    return attempt


def join_encode(
    step: ExportStep, media: MediaTools, storage: Storage, attempts: list[int]
) -> Output:
    """The join step's work: the segments (rendered by the segment steps, normally all in
    the cache) joined into the encoded video and its record."""
    record = storage.get_json(plan_key(step.partition_key))
    attempt = max([int(record["attempt"]), *attempts])
    with media.temp_dir(f"export-{step.partition_key}-join") as scratch:
        work = Path(scratch)
        encode = open_encode(step, storage, media, work, attempt)
        cache = StorageSegmentCache(storage)
        # Normally nothing is left to render; after a segment's retry with safer settings,
        # the others are rendered again here with those (`render_video` renders only what
        # the cache lacks, so the sources of those clips alone are fetched).
        plan = encode.plan()
        missing = {s.clip for s in plan.segments if not s.key}
        for s in plan.segments:
            if s.key and not cache.has(s.key, encode.settings.container):
                missing |= {s.clip} | ({s.clip + 1} if s.b else set())
        encode.fetch_sources(missing)
        music = _music(step.spec, encode.manifest, storage, work)
        target = output_format(step.spec.format)
        output = work / f"encoded.{target.extension}"
        result = render_video(
            encode.inputs,
            encode.settings,
            work / "segments",
            output,
            on_progress=step.progress,
            ffmpeg=media.ffmpeg,
            ffprobe=media.ffprobe,
            timeout_s=media.ffmpeg_timeout_s,
            cache=cache,
            limits=media.limits(),
            parallel=media.segment_workers,
            captions=encode.burn,
            music=music,
            subtitles=encode.soft,
            max_segment_s=media.max_segment_s,
        )
        key = encoded_key(step.partition_key, target.extension)
        storage.put_file(output, key, content_type=target.content_type)
    step.store.end_segments(step.request_id)
    settings = encode.settings
    seconds = round(time.time() - float(record["started_at"]), 2)  # plan to join
    rendered_here = result.segments - result.reused_segments
    reused = int(record["cached"])
    summary = {
        "key": key,
        "format": target.name,
        "bytes": result.size_bytes,
        "duration_s": result.duration_s,
        "frames": result.frames,
        "width": settings.width,
        "height": settings.height,
        "fps": str(settings.fps),
        "settings": {k: str(v) for k, v in asdict(settings).items()},
        "attempt": attempt + 1,
        "clip_count": len(encode.inputs),
        "segments": result.segments,
        "reused_segments": reused,
        "rendered_in_join": rendered_here,
        "stream_copy": result.stream_copy,
        "seconds": seconds,
    }
    storage.put_json(encoded_record_key(step.partition_key), summary)
    return Output(
        None,
        metadata={
            "duration_s": round(result.duration_s, 3),
            "bytes": result.size_bytes,
            "frame_size": f"{settings.width}x{settings.height}",
            "fps": float(settings.fps),
            "frames": result.frames,
            "encoder_settings": MetadataValue.json(summary["settings"]),
            "attempt": attempt + 1,
            "segments": result.segments,
            "reused_segments": reused,
            "rendered_in_join": rendered_here,
            "stream_copy": result.stream_copy,
            "seconds": seconds,
        },
    )


def build_encoded_video(retry_policy: RetryPolicy):
    retries = retry_policy.max_retries

    @op(
        name="encoded_video_plan",
        ins={"downloaded_clips": In(Nothing)},
        out=DynamicOut(list[int]),
        retry_policy=retry_policy,
        description="Plans the segments, measures loudness; one output per segment to render.",
    )
    def plan_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
    ):
        with export_step(context, app_db, STEP_NAME, PLAN_BAND, retries) as step:
            attempt = context.retry_number
            pending = _guarded(lambda: plan_encode(step, media, storage.open(), attempt))
        for batch in pending:
            key = f"segment_{batch[0]:04d}"
            if len(batch) > 1:
                key = f"segments_{batch[0]:04d}_{batch[-1]:04d}"
            yield DynamicOutput(batch, mapping_key=key)

    @op(
        name="encoded_video_segment",
        retry_policy=retry_policy,
        description="Renders a segment (or a batch of them) into the segment cache in storage.",
    )
    def segment_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
        indexes: list[int],
    ) -> int:
        # One of many: the band is full only when all of them are (`segment_progress`).
        with export_step(
            context, app_db, STEP_NAME, SEGMENTS_BAND, retries, fills_band=False
        ) as step:
            return _guarded(
                lambda: render_batch(step, media, storage.open(), indexes, context.retry_number)
            )

    @op(
        name="encoded_video_join",
        out=Out(Nothing),
        retry_policy=retry_policy,
        description="Joins the segments by stream copy into the encoded video.",
    )
    def join_op(
        context: OpExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
        attempts: list[int],
    ):
        with export_step(context, app_db, STEP_NAME, JOIN_BAND, retries) as step:
            return _guarded(lambda: join_encode(step, media, storage.open(), attempts))

    @graph_asset(
        name="encoded_video",
        partitions_def=export_partitions,
        group_name="export",
        ins={"downloaded_clips": AssetIn(key=downloaded_clips_key, dagster_type=Nothing)},
        description=(
            "The clips trimmed, fitted, joined and encoded (H.264/AAC MP4, faststart; HEVC "
            "or WebM on request), one step per segment."
        ),
        kinds={"ffmpeg"},
    )
    def encoded_video(downloaded_clips):
        segments = plan_op(downloaded_clips).map(segment_op)
        return join_op(segments.collect())

    return encoded_video
