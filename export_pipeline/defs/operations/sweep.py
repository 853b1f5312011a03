"""Retention of exports: a request's objects are deleted when its time is up (product doc:
7 days; the app may give each request its own `retention_days` from the user's plan).

Each request has its own deadline (`deadline`): a complete row's `expires_at` (written on
completion: `completed_at` + its `retention_days`, or EXPORT_RETENTION_DAYS without one;
what the app shows), else, for rows without one (failed or canceled, or completed before
the column existed), when it finished plus its own `retention_days` or the default.
Changing EXPORT_RETENTION_DAYS therefore applies to exports completed afterwards: an
`expires_at` the app has shown is kept.

`retention_job` (daily `retention_schedule`) sweeps every finished request (complete,
failed or canceled) whose deadline has passed:

1. the row: `complete` becomes `expired`; `video_url` and `poster_url` become NULL on every
   swept row (the app must never show a dead link). A row that changed status since it
   was read (a re-export started) is left alone.
2. archived clips (`clips/sha256/...`) the swept requests used, from their manifests and
   from the URL index of their clip URLs (a request that failed before writing its
   manifest still archived some clips), unless a request that is kept still uses them:
   any manifest left under `work/`, or the URL index of a kept request without one. The
   `clips/by-url/...` index entries pointing at deleted clips, and the rendered segments
   cached for them (`segments/<clip sha256>/...`), go with them.
3. the request's own objects: `videos/exp-<id>.*` (video and poster) and `work/exp-<id>/`.
4. its dynamic partition `exp-<id>` (so the partition count stays bounded; runs and
   their logs stay).

The partition is deleted last: a failed or canceled row keeps its status, so its
partition is what tells a later sweep that the request still has something to delete
(an interrupted sweep is finished by the next one). A sweep that finds nothing does
nothing: running it twice is safe. `dry_run` reports without changing anything.

Known limit: an export that starts downloading during a sweep may reuse an archived clip
the sweep is deleting (same content as an expired request's clip, not yet in any
manifest). Its encode step then fails and is retried; a re-execution downloads the clip
again. The schedule runs at a quiet hour to keep that window unlikely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dagster import AssetKey, AssetObservation, DagsterInstance, MetadataValue

from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.layout import (
    archived_sha256,
    manifest_key,
    manifest_partition,
    partition_key,
    request_id_from_key,
    segments_prefix,
    url_index_key,
    videos_prefix,
    work_prefix,
)
from export_pipeline.domain.request import (
    DEFAULT_RETENTION_DAYS,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    retention_days_of,
)
from export_pipeline.domain.values import decode_json
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import Storage

SWEPT_STATUSES = (st.COMPLETE, st.FAILED, st.CANCELED)
# The assets a request's partition materializes.
EXPORT_ASSETS = ("downloaded_clips", "encoded_video", "published_video")
_ID_CHUNK = 500  # ids per `IN (...)` query

Log = Callable[[str], None]


@dataclass
class RetentionReport:
    dry_run: bool
    now: datetime
    cutoff: datetime  # the default's: rows without a retention of their own finished before it
    requests: list[int] = field(default_factory=list)  # swept request ids
    expired: list[int] = field(default_factory=list)  # complete rows marked expired
    skipped: list[int] = field(default_factory=list)  # rows that changed under the sweep
    partitions_deleted: int = 0
    deleted: dict[str, int] = field(
        default_factory=lambda: {
            "videos": 0,
            "work": 0,
            "clips": 0,
            "url_index": 0,
            "segments": 0,
        }
    )
    bytes_freed: int = 0
    clips_kept: int = 0  # archived clips of swept requests still used by kept ones

    @property
    def objects_deleted(self) -> int:
        return sum(self.deleted.values())

    def metadata(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "requests_swept": len(self.requests),
            "rows_expired": len(self.expired),
            "rows_skipped": len(self.skipped),
            "partitions_deleted": self.partitions_deleted,
            **{f"{kind}_deleted": n for kind, n in self.deleted.items()},
            "objects_deleted": self.objects_deleted,
            "clips_kept": self.clips_kept,
            "bytes_freed": self.bytes_freed,
            "request_ids": MetadataValue.json(self.requests[:1000]),
        }

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"retention (due by {self.now:%Y-%m-%d %H:%M} UTC): "
            f"{len(self.requests)} request(s) swept, {len(self.expired)} expired, "
            f"{self.objects_deleted} object(s) {verb} {self.bytes_freed} bytes "
            f"({', '.join(f'{k} {n}' for k, n in self.deleted.items())}), "
            f"{self.clips_kept} shared clip(s) kept, "
            f"{self.partitions_deleted} partition(s) deleted"
        )


def _chunks(items: list[int], size: int = _ID_CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _partition_ids(instance: DagsterInstance) -> list[int]:
    ids = []
    for key in instance.get_dynamic_partitions(export_partitions.name):
        with contextlib.suppress(ValueError):  # not ours: leave it alone
            ids.append(request_id_from_key(key))
    return sorted(ids)


def deadline(row: dict[str, Any], default_days: float = DEFAULT_RETENTION_DAYS) -> datetime | None:
    """When the request's objects are due for deletion (see the module docstring): a
    complete row's `expires_at`, else when it finished plus its own retention."""
    if row.get("status") == st.COMPLETE and row.get("expires_at") is not None:
        return as_utc(row["expires_at"])
    finished = row.get("completed_at") or row.get("updated_at")
    if finished is None:
        return None
    return as_utc(finished) + timedelta(days=retention_days_of(row, default_days))  # type: ignore[arg-type]


def _is_due(row: dict[str, Any], now: datetime, default_days: float) -> bool:
    if row.get("status") == st.EXPIRED:
        return True  # swept before, by a sweep that did not finish
    moment = deadline(row, default_days)
    return moment is not None and moment <= now


def due_requests(
    store: RequestStore,
    instance: DagsterInstance,
    now: datetime,
    default_days: float = DEFAULT_RETENTION_DAYS,
) -> list[dict[str, Any]]:
    """Rows to sweep: complete rows whose deadline has passed, and finished rows of any
    kind (also `expired`: an interrupted sweep) whose partition still exists and whose
    deadline has passed. No request is kept less than a day, so older rows are read."""
    earliest = now - timedelta(days=min(MIN_RETENTION_DAYS, default_days))
    due = {
        int(r["id"]): r for r in store.complete_due(now, earliest) if _is_due(r, now, default_days)
    }
    statuses = [*SWEPT_STATUSES, st.EXPIRED]
    for chunk in _chunks(_partition_ids(instance)):
        for row in store.finished_before(earliest, statuses, ids=chunk):
            if _is_due(row, now, default_days):
                due[int(row["id"])] = row
    return [due[i] for i in sorted(due)]


def kept_requests(
    store: RequestStore, now: datetime, default_days: float, swept_ids: Iterable[int]
) -> list[dict[str, Any]]:
    """Rows whose objects stay: in progress, or finished and not due yet (never kept
    longer than the longest retention, so older rows are not read)."""
    oldest = now - timedelta(days=max(MAX_RETENTION_DAYS, default_days))
    return [
        row
        for row in store.retained(oldest, exclude_ids=set(swept_ids))
        if row["status"] not in SWEPT_STATUSES or not _is_due(row, now, default_days)
    ]


def _clip_urls(row: dict[str, Any]) -> list[str]:
    try:
        clips = decode_json(row.get("clips"))
    except ValueError:
        return []
    if not isinstance(clips, list):
        return []
    return [c["url"] for c in clips if isinstance(c, dict) and isinstance(c.get("url"), str)]


def _get_json(storage: Storage, key: str) -> Any:
    try:
        return storage.get_json(key) if storage.exists(key) else None
    except (KeyError, ValueError):  # vanished meanwhile, or not JSON: nothing to learn
        return None


def _manifest_clip_keys(manifest: Any) -> set[str]:
    if not isinstance(manifest, dict):
        return set()
    return {e["key"] for e in manifest.get("clips", []) if isinstance(e, dict) and e.get("key")}


def _mark_swept(store: RequestStore, row: dict[str, Any]) -> bool:
    """Take the row out of use before its objects go; False if it moved on meanwhile."""
    request_id = int(row["id"])
    if row["status"] == st.COMPLETE and store.transition(
        request_id, st.EXPIRED, video_url=None, poster_url=None
    ):
        return True
    current = store.get(request_id) or {}
    if current.get("status") not in (st.FAILED, st.CANCELED, st.EXPIRED):
        return False
    store.clear_media_urls(request_id)
    return True


def sweep_expired(
    store: RequestStore,
    storage: Storage,
    instance: DagsterInstance,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    log: Log = lambda message: None,
) -> RetentionReport:
    """Delete what requests whose deadline has passed left behind (see the module
    docstring for what and in which order); `retention_days` is the default for rows
    without their own. Idempotent; `dry_run` only reports."""
    now = utcnow() if now is None else as_utc(now)
    report = RetentionReport(dry_run=dry_run, now=now, cutoff=now - timedelta(days=retention_days))
    # 1. the rows, first, so the app stops linking to what is about to go
    swept = _take_rows(store, due_requests(store, instance, now, retention_days), report, log)
    if not swept:
        return report
    # 2. archived clips the swept requests used, minus those a kept request still uses
    candidates, index_entries = _clips_of(storage, swept)
    live = (
        _clips_in_use(storage, store, now, retention_days, report.requests) if candidates else set()
    )
    doomed = candidates - live
    report.clips_kept = len(candidates & live)
    # 3. clips, then each request's own objects (its manifest last: it names the clips)
    delete = _Deleter(storage, report)
    for key in sorted(doomed):
        delete("clips", key)
    for index_key, clip_key in sorted(index_entries.items()):
        if clip_key in doomed:
            delete("url_index", index_key)
    for clip_key in sorted(doomed):
        sha = archived_sha256(clip_key)
        if sha:  # the segment cache of a clip goes with it
            for key in list(storage.list_keys(segments_prefix(sha))):
                delete("segments", key)
    for part in (partition_key(int(r["id"])) for r in swept):
        for key in list(storage.list_keys(videos_prefix(part))):
            delete("videos", key)
        work = list(storage.list_keys(work_prefix(part)))
        for key in sorted(work, key=lambda k: k == manifest_key(part)):
            delete("work", key)
    # 4. partitions: the deletion is recorded on each of the request's assets (an
    # observation, in the UI beside its materializations: a "materialize" of it is a
    # re-export), then the partition goes (runs and their logs stay)
    for part in sorted(partition_key(int(r["id"])) for r in swept):
        if instance.has_dynamic_partition(export_partitions.name, part):
            if not dry_run:
                _record_deletion(instance, part, now)
                instance.delete_dynamic_partition(export_partitions.name, part)
            report.partitions_deleted += 1
    log(report.summary())
    return report


def _take_rows(
    store: RequestStore, due: list[dict[str, Any]], report: RetentionReport, log: Log
) -> list[dict[str, Any]]:
    """The due rows taken out of use (expired, URLs cleared); rows that moved on meanwhile
    are left alone."""
    swept = []
    for row in due:
        if report.dry_run or _mark_swept(store, row):
            swept.append(row)
            if row["status"] == st.COMPLETE:
                report.expired.append(int(row["id"]))
        else:
            report.skipped.append(int(row["id"]))
            log(f"export request {row['id']} changed while being swept; left alone")
    report.requests = [int(r["id"]) for r in swept]
    return swept


def _clips_of(storage: Storage, rows: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
    """The archived clips the rows used (from their manifests and from the URL index of
    their clip URLs: a request that failed before writing its manifest still archived
    some), and the index entries pointing at them ({index key: clip key})."""
    clips: set[str] = set()
    index_entries: dict[str, str] = {}
    for row in rows:
        manifest = _get_json(storage, manifest_key(partition_key(int(row["id"]))))
        clips |= _manifest_clip_keys(manifest)
        urls = set(_clip_urls(row))
        if isinstance(manifest, dict):
            urls |= {e.get("url") for e in manifest.get("clips", []) if isinstance(e, dict)}
        for url in filter(None, urls):
            entry = _get_json(storage, url_index_key(url))
            if isinstance(entry, dict) and entry.get("key"):
                index_entries[url_index_key(url)] = entry["key"]
                clips.add(entry["key"])
    return clips, index_entries


def _clips_in_use(
    storage: Storage, store: RequestStore, now: datetime, days: float, swept_ids: list[int]
) -> set[str]:
    """Archived clips a kept request still uses: any manifest left under `work/`, or the URL
    index of a kept request without one."""
    swept = {partition_key(i) for i in swept_ids}
    live: set[str] = set()
    with_manifest: set[str] = set()
    for key in storage.list_keys("work/"):
        part = manifest_partition(key)
        if part is None or part in swept:
            continue
        with_manifest.add(part)
        live |= _manifest_clip_keys(_get_json(storage, key))
    for row in kept_requests(store, now, days, swept_ids):
        if partition_key(int(row["id"])) in with_manifest:
            continue  # its manifest lists every clip it uses
        for url in _clip_urls(row):
            entry = _get_json(storage, url_index_key(url))
            if isinstance(entry, dict) and entry.get("key"):
                live.add(entry["key"])
    return live


class _Deleter:
    """Deletes an object (not in a dry run) and counts it, by kind, with its bytes."""

    def __init__(self, storage: Storage, report: RetentionReport):
        self.storage, self.report = storage, report

    def __call__(self, kind: str, key: str) -> None:
        size = self.storage.size(key)
        if size is None:
            return
        if not self.report.dry_run:
            self.storage.delete(key)
        self.report.deleted[kind] += 1
        self.report.bytes_freed += size


def _record_deletion(instance: DagsterInstance, partition: str, now: datetime) -> None:
    """What an operator sees of a swept export in Dagster: each of its assets observed
    deleted (SQL event logs cannot wipe a partition's materializations)."""
    for asset in EXPORT_ASSETS:
        instance.report_runless_asset_event(
            AssetObservation(
                asset_key=AssetKey(asset),
                partition=partition,
                description="deleted by retention: materialize again to re-export",
                metadata={"deleted": True, "deleted_at": now.isoformat(timespec="seconds")},
            )
        )
