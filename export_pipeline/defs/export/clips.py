"""`downloaded_clips`: every clip of the request, checked and archived in our storage.

Clips are archived under a content-addressed key (`clips/sha256/<hex>.mp4`) and listed in
the partition's manifest (`work/exp-<id>/clips.json`), so a later run of the partition
(re-execution, backfill) reuses the archive instead of the CDN, whose URLs expire.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from export_pipeline.defs.export.extras import fetch_captions, fetch_soundtrack
from export_pipeline.defs.export.steps import ExportStep, export_step
from export_pipeline.defs.intake.partitions import export_partitions
from export_pipeline.defs.resources import AppDatabase, ClipDownloads, MediaTools, StorageResource
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.layout import archive_key, manifest_key, url_index_key
from export_pipeline.domain.request import ClipSpec
from export_pipeline.io.http import (
    ByteBudget,
    DownloadPolicy,
    download,
    http_client,
)
from export_pipeline.io.storage import Storage
from export_pipeline.media.probe import InvalidMedia, probe_and_check

PROGRESS_BAND = (0, 10)


# What fetching one clip took, recorded with the clips it fetched (not with reused ones):
# the download, and the probe and checks (`probe_and_check`), which run in the download
# thread, so one clip's checks overlap the other clips' downloads.
TIMINGS = ("download_s", "check_s")


@dataclass
class ClipFetcher:
    """Gets one clip into the archive: from an earlier run if possible, else from the CDN."""

    storage: Storage
    media: MediaTools
    policy: DownloadPolicy
    scratch: Path
    previous: dict[str, dict[str, Any]]
    # The export's limit on the bytes of all its clips, shared by the download threads.
    budget: ByteBudget | None = None

    def archived(self, clip: ClipSpec) -> dict[str, Any] | None:
        for entry in (self.previous.get(clip.url), self._by_url(clip.url)):
            if entry and self.storage.exists(entry["key"]):
                return entry
        return None

    def _by_url(self, url: str) -> dict[str, Any] | None:
        key = url_index_key(url)
        return self.storage.get_json(key) if self.storage.exists(key) else None

    def fetch(self, clip: ClipSpec, client) -> dict[str, Any]:
        entry = self.archived(clip)
        if entry:
            # A reused clip is encoded all the same: it counts against the export's limit.
            self._count(clip, entry["bytes"])
            earlier = {k: v for k, v in entry.items() if k not in TIMINGS}
            return {**earlier, "reused": True}
        path = self.scratch / f"clip-{clip.position:04d}.download"
        try:
            started = time.monotonic()
            got = download(clip.url, path, self.policy, client, self.budget)
            downloaded = time.monotonic()
            info = probe_and_check(path, self.media.runner())
            checked = time.monotonic()
        except InvalidMedia as exc:
            raise exc.of_clip(clip.label) from exc
        except ExportFailure as exc:
            raise exc.within(clip.label) from exc
        key = archive_key(got.sha256)
        if not self.storage.exists(key):
            self.storage.move_file(path, key, content_type="video/mp4")
        path.unlink(missing_ok=True)
        entry = {
            "key": key,
            "sha256": got.sha256,
            "bytes": got.size_bytes,
            **info.as_metadata(),
            "media": info.to_record(),  # so the encode step need not probe it again
        }
        self.storage.put_json(url_index_key(clip.url), entry)
        timings = {
            "download_s": round(downloaded - started, 3),
            "check_s": round(checked - downloaded, 3),
        }
        return {**entry, "reused": False, **timings}

    def _count(self, clip: ClipSpec, size: int) -> None:
        if self.budget is None:
            return
        try:
            self.budget.take(size)
        except ExportFailure as exc:
            raise exc.within(clip.label) from exc


def planned_duration(clip: ClipSpec, clip_length_s: float) -> float:
    """Seconds of `clip` in the export: from trim_start for `duration`, or to the end."""
    available = clip_length_s - clip.trim_start
    if available <= 0:
        raise ExportFailure(
            f"{clip.label}: trim_start {clip.trim_start:g} s is at or beyond the clip's "
            f"length {clip_length_s:g} s",
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        )
    return available if clip.duration is None else min(available, clip.duration)


def check_total_duration(clips: list[ClipSpec], entries: list[dict], limit_s: float) -> float:
    """Validate trims against the real clip lengths and the total against the limit."""
    total = sum(planned_duration(c, e["duration"]) for c, e in zip(clips, entries, strict=True))
    if total > limit_s:
        raise ExportFailure(
            f"the export would be {total / 60:.1f} minutes long; the maximum is "
            f"{limit_s / 60:.1f} minutes: shorten or remove clips",
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        )
    return total


def _fetch_extras(
    step: ExportStep,
    storage: Storage,
    media: MediaTools,
    previous: dict,
    fetching: tuple[DownloadPolicy, Any, ByteBudget],
    scratch: Path,
) -> dict[str, Any]:
    """The request's soundtrack and captions, fetched (`fetching`: the policy, client and
    budget of the clips' downloads) or taken from the `previous` manifest."""
    policy, client, budget = fetching
    extras = {}
    if step.spec.soundtrack:
        extras["soundtrack"] = fetch_soundtrack(
            step.spec.soundtrack, previous.get("soundtrack"), storage, policy, client, budget,
            scratch, media.runner(),
        )  # fmt: skip
        step.context.log.info(f"soundtrack: {extras['soundtrack']['bytes']} bytes")
    if step.spec.captions:
        captions = fetch_captions(
            step.spec.captions, previous.get("captions"), storage, policy, client, budget, scratch
        )
        if captions:
            extras["captions"] = captions
    return extras


def download_clips(
    step: ExportStep, storage: Storage, media: MediaTools, downloads: ClipDownloads
) -> MaterializeResult:
    started = time.monotonic()
    clips = step.spec.ordered_clips
    manifest = manifest_key(step.partition_key)
    previous = storage.get_json(manifest) if storage.exists(manifest) else {"clips": []}
    by_url = {entry["url"]: entry for entry in previous["clips"]}
    policy = downloads.policy()

    with media.temp_dir(f"export-{step.partition_key}-clips") as scratch:
        budget = ByteBudget(downloads.max_request_bytes)
        fetcher = ClipFetcher(storage, media, policy, Path(scratch), by_url, budget)
        done = 0

        def fetch(clip: ClipSpec) -> dict[str, Any]:
            nonlocal done
            entry = fetcher.fetch(clip, client)
            done += 1
            step.progress(done / len(clips))
            if entry["reused"]:
                how = "reused from our archive"
            else:
                took = entry["download_s"], entry["check_s"]
                how = "downloaded in {:.2f} s, checked in {:.2f} s".format(*took)
            step.context.log.info(f"{clip.label}: {how} ({entry['bytes']} bytes)")
            return entry

        with http_client(policy) as client, ThreadPoolExecutor(downloads.concurrency) as pool:
            entries = list(pool.map(fetch, clips))
            fetching = (policy, client, budget)
            extras = _fetch_extras(step, storage, media, previous, fetching, Path(scratch))

    total_s = check_total_duration(clips, entries, downloads.max_total_duration_s)
    records = [
        {"position": c.position, "scene_number": c.scene_number, "url": c.url, **e}
        for c, e in zip(clips, entries, strict=True)
    ]
    seconds = round(time.monotonic() - started, 2)
    storage.put_json(manifest, {"clips": records, "seconds": seconds, **extras})
    reused = sum(1 for r in records if r["reused"])
    return MaterializeResult(
        metadata={
            "clip_count": len(records),
            "fetched": len(records) - reused,
            "reused": reused,
            "bytes": sum(r["bytes"] for r in records),
            "planned_duration_s": round(total_s, 3),
            "seconds": seconds,
            "check_s": round(sum(r.get("check_s", 0.0) for r in records), 3),
            "manifest": MetadataValue.path(manifest),
            "clips": MetadataValue.md(_clip_table(records)),
        }
    )


def _clip_table(records: list[dict]) -> str:
    lines = [
        "| # | scene | codec | size | fps | duration s | audio | bytes | source "
        "| download s | checks s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        source = "reused" if r["reused"] else "fetched"
        lines.append(
            f"| {r['position']} | {r['scene_number']} | {r.get('codec')} | "
            f"{r.get('width')}x{r.get('height')} | {r.get('fps')} | {r.get('duration')} | "
            f"{'yes' if r.get('audio') else 'no'} | {r['bytes']} | {source} | "
            f"{r.get('download_s', '-')} | {r.get('check_s', '-')} |"
        )
    return "\n".join(lines)


def build_downloaded_clips(retry_policy: RetryPolicy):
    @asset(
        name="downloaded_clips",
        partitions_def=export_partitions,
        group_name="export",
        retry_policy=retry_policy,
        description="The request's clips, checked with ffprobe and archived in our storage.",
        kinds={"python"},
    )
    def downloaded_clips(
        context: AssetExecutionContext,
        app_db: AppDatabase,
        storage: StorageResource,
        media: MediaTools,
        downloads: ClipDownloads,
    ) -> MaterializeResult:
        with export_step(
            context, app_db, "downloaded_clips", PROGRESS_BAND, retry_policy.max_retries
        ) as step:
            return download_clips(step, storage.open(), media, downloads)

    return downloaded_clips


downloaded_clips_key = AssetKey("downloaded_clips")
