"""`published_video`: the encoded video at its stable key, its URL on the request row.

One key per request (`videos/exp-<id>.mp4`, `.webm` for WebM): publishing again
(re-execution, backfill) replaces the object atomically, never leaving two videos or a
partial one. Next to it, `videos/exp-<id>.jpg` is the poster (a frame about 1 s in, see
`media/poster.py`), made from a local copy of the encoded video; its URL goes to the row
with the video's, in the same transition to `complete`. A poster FFmpeg cannot make is
logged and skipped: it never holds back the video. The same transition writes
`expires_at` (completion + the request's `retention_days`, else EXPORT_RETENTION_DAYS),
when retention deletes the video, and clears `reminded_at` and `reminder_emailed_at` (a new
completion earns its own `expiring` reminder and email).
"""

import base64
import time
from datetime import timedelta
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from export_pipeline.defs.export.steps import (
    ExportStep,
    check_not_canceled,
    export_step,
)
from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.defs.resources import AppDatabase, MediaTools, StorageResource
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.formats import output_format
from export_pipeline.domain.layout import encoded_record_key, manifest_key, poster_key, video_key
from export_pipeline.domain.request import DEFAULT_RETENTION_DAYS
from export_pipeline.domain.values import human_bytes
from export_pipeline.io.storage import ObjectNotFound, Storage
from export_pipeline.media.poster import THUMBNAIL_WIDTH, make_poster, poster_time
from export_pipeline.media.runner import FFmpegError

PROGRESS_BAND = (97, 100)


def thumbnail_markdown(jpeg: bytes) -> str:
    """Markdown showing a small JPEG inline (a data: URI, so the Dagster UI renders it
    whatever the storage: a file:// URL would not load in the browser)."""
    return f"![poster](data:image/jpeg;base64,{base64.b64encode(jpeg).decode('ascii')})"


def make_posters(
    step: ExportStep, video: Path, duration_s: float, media: MediaTools, scratch: Path
) -> tuple[Path, bytes] | None:
    """The poster and a 320 px thumbnail of it (JPEG bytes), written in `scratch`, or None
    if FFmpeg failed."""
    at_s = poster_time(duration_s)
    poster, thumbnail = scratch / "poster.jpg", scratch / "thumbnail.jpg"
    try:
        make_poster(
            video, poster, at_s, ffmpeg=media.runner(), thumbnail=(thumbnail, THUMBNAIL_WIDTH)
        )
    except FFmpegError as exc:
        step.context.log.warning(f"{step.partition_key}: no poster, publishing without: {exc}")
        return None
    return poster, thumbnail.read_bytes()


def check_quota(storage: Storage, quota_bytes: int, new_bytes: int, replaced_bytes: int) -> None:
    """Refuse to publish past the storage quota, saying how big the video is and what is used."""
    if not quota_bytes:
        return
    used = storage.total_bytes()
    if used - replaced_bytes + new_bytes > quota_bytes:
        raise ExportFailure(
            f"storage is full: this video is {human_bytes(new_bytes)} and {human_bytes(used)} "
            f"of the {human_bytes(quota_bytes)} quota are used; delete old exports or upgrade "
            "the storage plan, then export again",
            cause=FailureCause.STORAGE,
            permanent=True,
        )


def publish(
    step: ExportStep,
    storage: Storage,
    media: MediaTools,
    quota_bytes: int = 0,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> MaterializeResult:
    """Publish the encoded video and its poster and mark the row complete; `retention_days`
    is the default (EXPORT_RETENTION_DAYS) for requests without their own."""
    started = time.monotonic()
    encoded = _get_json(storage, encoded_record_key(step.partition_key))
    clips = _get_json(storage, manifest_key(step.partition_key))
    target = output_format(encoded.get("format"))  # what encoded_video made
    key = video_key(step.partition_key, target.extension)
    posters = store_video(step, storage, media, encoded, key, quota_bytes)
    url, poster_url = storage.url(key), storage.url(poster_key(step.partition_key))
    size = storage.size(key)
    # What the app shows ("kept until ..."); retention deletes the video then. A new
    # completion (re-export) starts the clock again and earns a new reminder.
    keep_days = step.spec.retention_days or retention_days
    completed_at = utcnow()
    expires_at = completed_at + timedelta(days=keep_days)
    mark_complete(
        step,
        video_url=url,
        poster_url=poster_url if posters else None,
        output_bytes=size,
        output_duration_s=encoded["duration_s"],
        completed_at=completed_at,
        expires_at=expires_at,
    )
    # The work copy would double every video in storage (and in the quota) until retention.
    storage.delete(encoded["key"])
    step.context.log.info(f"{step.partition_key}: published {size} bytes at {url}")
    spec = step.spec
    return MaterializeResult(
        metadata={
            "url": MetadataValue.url(url),
            **poster_metadata(posters, poster_url, encoded["duration_s"]),
            "storage_key": key,
            "bytes": size,
            "duration_s": round(encoded["duration_s"], 3),
            "resolution": f"{spec.resolution} {spec.aspect_ratio} "
            f"({encoded['width']}x{encoded['height']})",
            "quality": spec.quality,
            "format": target.name,
            "clip_count": encoded["clip_count"],
            "seconds_download": clips.get("seconds"),
            "seconds_encode": encoded["seconds"],
            "seconds_publish": round(time.monotonic() - started, 2),
            "retention_days": keep_days,
            "expires_at": expires_at.isoformat(timespec="seconds"),
        }
    )


def _missing(exc: ObjectNotFound) -> ExportFailure:
    return ExportFailure(
        f"{exc}: materialize encoded_video for this partition first",
        cause=FailureCause.STORAGE,
        permanent=True,
    )


def _get_json(storage: Storage, key: str) -> dict:
    try:
        return storage.get_json(key)
    except ObjectNotFound as exc:
        raise _missing(exc) from exc


def store_video(
    step: ExportStep,
    storage: Storage,
    media: MediaTools,
    encoded: dict,
    key: str,
    quota_bytes: int,
) -> tuple[Path, bytes] | None:
    """The encoded video at `key` and its poster beside it, within the quota and only if the
    export was not canceled; returns the poster and its thumbnail (None: FFmpeg made none)."""
    pkey = poster_key(step.partition_key)
    extension = key.rsplit(".", 1)[-1]
    with media.temp_dir(f"export-{step.partition_key}-publish") as scratch:
        # Published before (re-execution, backfill of publish alone): the work copy was
        # removed then, and the published video is the same file.
        source = encoded["key"] if storage.exists(encoded["key"]) else key
        # Local storage: the poster is taken from the object in place, not from a copy.
        local = storage.local_file(source) or Path(scratch) / f"encoded.{extension}"
        try:
            if not local.is_file():
                storage.get_file(source, local)
        except ObjectNotFound as exc:
            raise _missing(exc) from exc
        posters = make_posters(step, local, encoded["duration_s"], media, Path(scratch))
        poster_bytes = posters[0].stat().st_size if posters else 0
        # What this export holds when done: the work copy goes, an older video is replaced.
        replaced = (storage.size(key) or 0) + (storage.size(pkey) or 0)
        if source != key:
            replaced += storage.size(source) or 0
        check_quota(storage, quota_bytes, encoded["bytes"] + poster_bytes, replaced)
        check_not_canceled(step.store, step.request_id)  # last chance before it is visible
        if source != key:
            storage.copy(source, key)
        if posters:
            storage.put_file(posters[0], pkey, content_type="image/jpeg")
        else:
            storage.delete(pkey)  # an earlier export's poster would show the wrong video
    return posters


def mark_complete(step: ExportStep, **published: object) -> None:
    """`complete`, from this run only, with what was published; clears the reminder
    claims (a new completion earns its own `expiring` reminder and email)."""
    changed = step.store.transition(
        step.request_id,
        st.COMPLETE,
        only_run_id=step.context.run_id,
        progress=100,
        error_message=None,
        reminded_at=None,
        reminder_emailed_at=None,
        **published,
    )
    if not changed:
        row = step.store.get(step.request_id) or {}
        raise ExportFailure(
            f"the request is {row.get('status')} (run {row.get('run_id')}); not marking it "
            "complete from this run",
            cause=FailureCause.OTHER,
            permanent=True,
        )


def poster_metadata(posters: tuple[Path, bytes] | None, url: str, duration_s: float) -> dict:
    if not posters:
        return {"poster": MetadataValue.md("(no poster: FFmpeg failed, see logs)")}
    return {
        "poster": MetadataValue.md(thumbnail_markdown(posters[1])),
        "poster_url": MetadataValue.url(url),
        "poster_at_s": poster_time(duration_s),
    }


def build_published_video(retry_policy: RetryPolicy, retention_days: int = DEFAULT_RETENTION_DAYS):
    @asset(
        name="published_video",
        partitions_def=export_partitions,
        group_name="export",
        deps=[AssetKey("encoded_video")],
        retry_policy=retry_policy,
        description="The finished video and its poster in storage; their URLs are written to "
        "the request row.",
    )
    def published_video(
        context: AssetExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
    ) -> MaterializeResult:
        with export_step(
            context, app_db, "published_video", PROGRESS_BAND, retry_policy.max_retries
        ) as step:
            return publish(step, storage.open(), media, storage.quota_bytes, retention_days)

    return published_video
