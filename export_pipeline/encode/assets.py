"""`encoded_video`: the clips trimmed, fitted to the frame, joined and encoded to one MP4.

The step reads the archived clips listed in the partition's manifest (never the CDN),
renders with FFmpeg (see `export_pipeline.media`), and stores the result at
`work/exp-<id>/encoded.mp4` with a small JSON record beside it for `published_video`.
A retried attempt uses safer encoder settings (`encode_settings(attempt=...)`).
"""

import errno
import time
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, RetryPolicy, asset

from export_pipeline.clips.assets import downloaded_clips_key, manifest_key
from export_pipeline.intake.partitions import export_partitions
from export_pipeline.intake.spec import ClipSpec, ExportSpec
from export_pipeline.media.captions import Cue, parse_captions
from export_pipeline.media.commands import encode_settings
from export_pipeline.media.layout import choose_frame_rate, output_format
from export_pipeline.media.probe import InvalidMedia, MediaInfo, probe
from export_pipeline.media.render import (
    BurnIn,
    ClipError,
    Music,
    RenderInput,
    Transition,
    render_video,
)
from export_pipeline.media.runner import FFmpegError
from export_pipeline.resources import AppDatabase, MediaTools, StorageResource
from export_pipeline.storage import ObjectNotFound, Storage
from export_pipeline.tracking import ExportError, ExportStep, export_step

PROGRESS_BAND = (10, 97)


def encoded_key(partition_key: str, extension: str = "mp4") -> str:
    return f"work/{partition_key}/encoded.{extension}"


def encoded_record_key(partition_key: str) -> str:
    return f"work/{partition_key}/encoded.json"


class StorageSegmentCache:
    """Rendered segments kept in our storage (`segments/<clip sha256>/<trim>-<length>-<mode>`),
    shared by every export: a re-export or backfill at the same settings renders only the
    clips that changed, and stitches the rest by stream copy."""

    def __init__(self, storage: Storage):
        self.storage = storage

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


def encode(
    step: ExportStep, storage: Storage, media: MediaTools, attempt: int
) -> MaterializeResult:
    started = time.monotonic()
    spec = step.spec
    try:
        manifest = storage.get_json(manifest_key(step.partition_key))
    except ObjectNotFound as exc:
        raise ExportError(
            "the clip manifest is missing: materialize downloaded_clips for this partition first",
            permanent=True,
        ) from exc
    entries = {entry["position"]: entry for entry in manifest["clips"]}

    with media.temp_dir(f"export-{step.partition_key}-encode") as scratch:
        work = Path(scratch)
        inputs = []
        for clip in spec.ordered_clips:
            entry = entries.get(clip.position)
            if entry is None or entry["url"] != clip.url:
                raise ExportError(
                    f"{clip.label} is not in the clip manifest: re-run downloaded_clips",
                    permanent=True,
                )
            local = work / f"source-{clip.position:04d}.mp4"
            storage.get_file(entry["key"], local)
            info = MediaInfo.from_record(entry.get("media"))
            if info is None or info.size_bytes != local.stat().st_size:
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
        music = _music(spec, manifest, storage, work)
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
        step.context.log.info(
            f"{step.partition_key}: encoding {len(inputs)} clips at {settings.width}x"
            f"{settings.height} {float(fps):.3f} fps (attempt {attempt + 1}, {settings})"
        )
        target = output_format(spec.format)
        output = work / f"encoded.{target.extension}"
        result = render_video(
            inputs,
            settings,
            work / "segments",
            output,
            on_progress=step.progress,
            ffmpeg=media.ffmpeg,
            ffprobe=media.ffprobe,
            timeout_s=media.ffmpeg_timeout_s,
            cache=StorageSegmentCache(storage),
            limits=media.limits(),
            parallel=media.segment_workers,
            captions=burn,
            music=music,
            subtitles=soft,
        )
        key = encoded_key(step.partition_key, target.extension)
        storage.put_file(output, key, content_type=target.content_type)

    seconds = round(time.monotonic() - started, 2)
    record = {
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
        "clip_count": len(inputs),
        "reused_segments": result.reused_segments,
        "stream_copy": result.stream_copy,
        "seconds": seconds,
    }
    storage.put_json(encoded_record_key(step.partition_key), record)
    return MaterializeResult(
        metadata={
            "duration_s": round(result.duration_s, 3),
            "bytes": result.size_bytes,
            "frame_size": f"{settings.width}x{settings.height}",
            "fps": float(settings.fps),
            "frames": result.frames,
            "encoder_settings": MetadataValue.json(record["settings"]),
            "attempt": attempt + 1,
            "reused_segments": result.reused_segments,
            "stream_copy": result.stream_copy,
            "seconds": seconds,
        }
    )


def build_encoded_video(retry_policy: RetryPolicy):
    @asset(
        name="encoded_video",
        partitions_def=export_partitions,
        group_name="export",
        deps=[downloaded_clips_key],
        retry_policy=retry_policy,
        description="The clips trimmed, fitted, joined and encoded (H.264/AAC MP4, faststart).",
        kinds={"ffmpeg"},
    )
    def encoded_video(
        context: AssetExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
    ) -> MaterializeResult:
        with export_step(
            context, app_db, "encoded_video", PROGRESS_BAND, retry_policy.max_retries
        ) as step:
            try:
                return encode(step, storage.open(), media, context.retry_number)
            except ExportError:
                raise
            except Exception as exc:
                raise render_error(exc) from exc

    return encoded_video
