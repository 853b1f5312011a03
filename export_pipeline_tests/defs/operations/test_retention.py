"""Retention on real parts: exports made through the production path (sensor -> partition
-> run) on SQLite and PostgreSQL, local storage and S3, a real Dagster instance; rows are
made old by moving their `completed_at` back in the database."""

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, Definitions, RunsFilter
from sqlalchemy import update

from export_pipeline.defs.operations.retention import build_retention_defs
from export_pipeline.defs.operations.sweep import sweep_expired
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.layout import archive_key, url_index_key
from export_pipeline.io.appdb.schema import export_requests
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.scratch import sweep_temp
from export_pipeline.io.storage import LocalStorage, Storage
from export_pipeline.media.samples import make_sample_clip
from export_pipeline_tests.cdn import status
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

pytestmark = pytest.mark.e2e

PARTITIONS = "export_requests"


def set_row(store: RequestStore, request_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(export_requests).where(export_requests.c.id == request_id).values(**values)
        )


def finished_days_ago(store: RequestStore, request_id: int, days: float) -> None:
    """Move the row's completion `days` back, and its `expires_at` with it (publish wrote
    completed_at + retention days)."""
    row = store.get(request_id)
    completed_at = utcnow() - timedelta(days=days)
    values = {"completed_at": completed_at}
    if row["expires_at"] is not None:
        moved = as_utc(completed_at) - as_utc(row["completed_at"])
        values["expires_at"] = as_utc(row["expires_at"]) + moved
    set_row(store, request_id, **values)


def sizes(storage: Storage) -> dict[str, int]:
    return {key: storage.size(key) for key in storage.list_keys()}


def segments_of(clip_key: str) -> str:
    """The prefix of the rendered segments cached for an archived clip."""
    return "segments/" + clip_key.removeprefix("clips/sha256/").removesuffix(".mp4") + "/"


def partitions(instance) -> set[str]:
    return set(instance.get_dynamic_partitions(PARTITIONS))


def clip_keys(storage: Storage, request_id: int) -> set[str]:
    manifest = storage.get_json(f"work/exp-{request_id}/clips.json")
    return {entry["key"] for entry in manifest["clips"]}


def retention_job(settings, **config):
    defs = Definitions.merge(
        build_retention_defs(retention_days=7), Definitions(resources=settings.resources())
    )
    return defs.resolve_job_def("retention_job"), {
        "ops": {"expire_old_exports": {"config": config}}
    }


def run_retention(settings, instance, **config) -> dict:
    job, run_config = retention_job(settings, **config)
    result = job.execute_in_process(instance=instance, run_config=run_config)
    assert result.success
    (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


def test_retention_sweeps_exactly_the_old_requests(db_store, instance, cdn):
    store, settings = db_store
    storage = LocalStorage(Path(settings.storage.local_root))
    make_sample_clip(cdn.root / "solo.mp4", width=320, height=240, duration=1.0, audio=False)
    cdn.fail("gone.mp4", status(403))

    # A: complete, old, with a poster; shares landscape.mp4 with B.
    a, ok_a, _ = export(
        settings, store, instance,
        [clip(cdn.url("landscape.mp4"), 1, duration=1), clip(cdn.url("portrait.mp4"), 2)],
    )  # fmt: skip
    # B: complete 5 days ago: kept (and so is the clip it shares with A).
    b, ok_b, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    # C: re-exported, then failed; the row still carries the earlier video's URL.
    c, ok_c, _ = export(settings, store, instance, [clip(cdn.url("classic.mp4"), 1)])
    # D: failed before writing a manifest, after archiving solo.mp4.
    d, failed_d, _ = export(
        settings, store, instance,
        [clip(cdn.url("solo.mp4"), 1), clip(cdn.url("gone.mp4"), 2)],
    )  # fmt: skip
    assert ok_a.success and ok_b.success and ok_c.success and not failed_d.success
    # F: waiting for the sensor; uses portrait.mp4, which A archived (no manifest yet).
    f = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low",
        clips=[clip(cdn.url("portrait.mp4"), 1)],
    )  # fmt: skip

    storage.put_bytes(f"videos/exp-{a}.jpg", b"poster")
    set_row(store, a, poster_url=storage.url(f"videos/exp-{a}.jpg"))
    set_row(store, c, status=st.FAILED, error_message="encoded_video failed: FFmpeg failed: x")
    for request_id in (a, c, d):
        finished_days_ago(store, request_id, 8)
    finished_days_ago(store, b, 5)

    landscape, portrait = sorted(
        clip_keys(storage, a), key=lambda k: k not in clip_keys(storage, b)
    )
    (classic,) = clip_keys(storage, c)
    solo = storage.get_json(url_index_key(cdn.url("solo.mp4")))["key"]
    assert solo.startswith("clips/sha256/") and storage.exists(solo)
    assert not storage.exists(f"work/exp-{d}/clips.json")
    before = sizes(storage)
    assert partitions(instance) == {f"exp-{i}" for i in (a, b, c, d)}

    own = (
        f"videos/exp-{a}.",
        f"videos/exp-{c}.",
        f"work/exp-{a}/",
        f"work/exp-{c}/",
        f"work/exp-{d}/",
    )
    doomed = {
        f"videos/exp-{a}.mp4",
        f"videos/exp-{a}.jpg",
        f"videos/exp-{c}.mp4",
        # and whatever else is theirs, e.g. the poster published_video makes
        *(k for k in before if k.startswith(own)),
        classic,
        solo,
        *(k for k in before if k.startswith(segments_of(classic))),  # its segment cache
        url_index_key(cdn.url("classic.mp4")),
        url_index_key(cdn.url("solo.mp4")),
    }
    assert doomed <= set(before)
    expected = {
        "dry_run": False,
        "requests_swept": 3,
        "rows_expired": 1,
        "rows_skipped": 0,
        "partitions_deleted": 3,
        "videos_deleted": sum(1 for k in doomed if k.startswith("videos/")),
        "work_deleted": sum(1 for k in doomed if k.startswith("work/")),
        "clips_deleted": 2,
        "url_index_deleted": 2,
        "segments_deleted": sum(1 for k in doomed if k.startswith("segments/")),
        "objects_deleted": len(doomed),
        "clips_kept": 2,  # landscape (B's manifest) and portrait (F's clip URL)
        "bytes_freed": sum(before[k] for k in doomed),
    }

    # A dry run reports the same and changes nothing.
    rows_before = {i: store.get(i) for i in (a, b, c, d, f)}
    report = run_retention(settings, instance, dry_run=True)
    assert {k: report[k] for k in expected} == {**expected, "dry_run": True}
    assert report["request_ids"] == [a, c, d]
    assert sizes(storage) == before
    assert {i: store.get(i) for i in (a, b, c, d, f)} == rows_before
    assert len(partitions(instance)) == 4

    report = run_retention(settings, instance)
    assert {k: report[k] for k in expected} == expected
    assert sizes(storage) == {k: v for k, v in before.items() if k not in doomed}
    assert storage.exists(landscape) and storage.exists(portrait)
    assert storage.exists(url_index_key(cdn.url("landscape.mp4")))
    assert storage.exists(url_index_key(cdn.url("portrait.mp4")))

    row_a, row_b, row_c, row_d = (store.get(i) for i in (a, b, c, d))
    assert row_a["status"] == st.EXPIRED
    assert row_a["video_url"] is None and row_a["poster_url"] is None
    assert row_a["output_bytes"] == rows_before[a]["output_bytes"]  # the history stays
    assert row_b["status"] == st.COMPLETE and row_b["video_url"] == rows_before[b]["video_url"]
    assert row_c["status"] == st.FAILED and row_c["video_url"] is None
    assert (
        row_d["status"] == st.FAILED and row_d["error_message"] == rows_before[d]["error_message"]
    )
    assert store.get(f)["status"] == st.PENDING
    assert partitions(instance) == {f"exp-{b}"}
    # What the UI shows: each swept partition's assets observed deleted (B's are not).
    for asset in ("downloaded_clips", "encoded_video", "published_video"):
        records = instance.fetch_observations(AssetKey(asset), limit=100).records
        deleted = {r.partition_key for r in records if r.asset_observation.metadata["deleted"]}
        assert deleted == {f"exp-{i}" for i in (a, c, d)}
    # Runs (and their logs) stay.
    for request_id in (a, c, d):
        runs = instance.get_runs(RunsFilter(tags={"dagster/partition": f"exp-{request_id}"}))
        assert runs

    # Twice is a no-op.
    after = sizes(storage)
    rows_after = {i: store.get(i) for i in (a, b, c, d, f)}
    again = run_retention(settings, instance)
    assert again["requests_swept"] == 0 and again["objects_deleted"] == 0
    assert again["partitions_deleted"] == 0 and again["bytes_freed"] == 0
    assert sizes(storage) == after
    assert {i: store.get(i) for i in (a, b, c, d, f)} == rows_after


def test_retention_days_is_run_config(settings, store, instance, cdn):
    """The run config's retention_days is the default of rows without a deadline of their
    own: here a row completed before `expires_at` existed. A row's `expires_at`, shown to
    the app, is kept whatever the default says."""
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    stamped, result_2, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success and result_2.success
    finished_days_ago(store, request_id, 3)
    finished_days_ago(store, stamped, 3)
    set_row(store, request_id, expires_at=None)
    assert run_retention(settings, instance)["requests_swept"] == 0  # the default: 7 days
    report = run_retention(settings, instance, retention_days=2)
    assert report["requests_swept"] == 1 and report["rows_expired"] == 1
    assert store.get(request_id)["status"] == st.EXPIRED
    assert store.get(stamped)["status"] == st.COMPLETE  # expires in 4 days
    keys = list(LocalStorage(Path(settings.storage.local_root)).list_keys())
    gone = (f"videos/exp-{request_id}.", f"work/exp-{request_id}/")
    assert f"videos/exp-{stamped}.mp4" in keys and not [k for k in keys if k.startswith(gone)]


def test_an_interrupted_sweep_is_finished_by_the_next(settings, store, instance):
    """A sweep that died after expiring the row: the partition says there is more to do."""
    storage = LocalStorage(Path(settings.storage.local_root))
    request_id = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )  # fmt: skip
    key = f"exp-{request_id}"
    set_row(store, request_id, status=st.EXPIRED, completed_at=utcnow() - timedelta(days=9))
    instance.add_dynamic_partitions(PARTITIONS, [key, "exp-999999", "not-an-export"])
    storage.put_bytes(f"videos/{key}.mp4", b"v" * 10)
    clip_key = archive_key("ab" * 32)
    storage.put_bytes(clip_key, b"c" * 5)
    storage.put_json(url_index_key("https://cdn.example/a.mp4"), {"key": clip_key})
    storage.put_json(
        f"work/{key}/clips.json", {"clips": [{"key": clip_key, "url": "https://cdn.example/a.mp4"}]}
    )
    for ext in ("mp4", "wav"):
        storage.put_bytes(f"{segments_of(clip_key)}0.000-end-copy.{ext}", b"s")
    other_segment = f"{segments_of(archive_key('cd' * 32))}0.000-end-copy.mp4"
    storage.put_bytes(other_segment, b"s")

    report = sweep_expired(store, storage, instance, 7)
    assert report.requests == [request_id] and report.expired == []
    assert report.deleted == {"videos": 1, "work": 1, "clips": 1, "url_index": 1, "segments": 2}
    assert list(storage.list_keys()) == [other_segment]  # another clip's cache stays
    # Partitions of rows the app no longer has, or that are not ours, are left alone.
    assert partitions(instance) == {"exp-999999", "not-an-export"}
    assert sweep_expired(store, storage, instance, 7).requests == []


def test_rows_still_in_progress_are_never_swept(settings, store, instance):
    storage = LocalStorage(Path(settings.storage.local_root))
    old = utcnow() - timedelta(days=30)
    ids = []
    for row_status in (st.PENDING, st.QUEUED, st.PROCESSING, st.RETRYING, st.REJECTED):
        request_id = store.insert(
            project_id="p", user_id="u", resolution="720p", quality="low",
            clips=[clip("https://cdn.example/a.mp4", 1)],
        )  # fmt: skip
        set_row(store, request_id, status=row_status, completed_at=old, updated_at=old)
        storage.put_bytes(f"work/exp-{request_id}/clips.json", b'{"clips": []}')
        ids.append(request_id)
    instance.add_dynamic_partitions(PARTITIONS, [f"exp-{i}" for i in ids])
    report = sweep_expired(store, storage, instance, 7)
    assert report.requests == [] and report.objects_deleted == 0
    assert len(list(storage.list_keys())) == len(ids)
    assert len(partitions(instance)) == len(ids)


def test_retention_on_s3(settings, store, instance, cdn, s3_server, s3_env, s3_client, s3_bucket):
    settings = settings.replace(
        storage={
            "backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_prefix": "exports",
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_region": "us-east-1",
        }
    )
    old, ok_old, _ = export(
        settings, store, instance,
        [clip(cdn.url("landscape.mp4"), 1, duration=1), clip(cdn.url("classic.mp4"), 2)],
    )  # fmt: skip
    new, ok_new, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert ok_old.success and ok_new.success
    finished_days_ago(store, old, 8)

    def keys() -> set[str]:
        listing = s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
        # Dagster's step outputs (dagster/io/) beside the pipeline's prefix: not its to expire.
        listing = [o for o in listing if not o["Key"].startswith("dagster/io/")]
        assert all(o["Key"].startswith("exports/") for o in listing)  # under the prefix
        return {o["Key"].removeprefix("exports/") for o in listing}

    before = keys()
    (classic,) = manifest_clips(s3_client, s3_bucket, old) - manifest_clips(
        s3_client, s3_bucket, new
    )
    own = (f"videos/exp-{old}.", segments_of(classic))  # video, poster, cached segments
    doomed = {
        f"videos/exp-{old}.mp4",
        f"work/exp-{old}/clips.json",
        f"work/exp-{old}/encoded.json",
        f"work/exp-{old}/plan.json",
        classic,
        url_index_key(cdn.url("classic.mp4")),
        *(k for k in before if k.startswith(own)),
    }
    assert doomed <= before
    report = run_retention(settings, instance)
    assert report["requests_swept"] == 1 and report["clips_deleted"] == 1
    assert report["clips_kept"] == 1 and report["objects_deleted"] == len(doomed)
    assert before - keys() == doomed
    assert f"videos/exp-{new}.mp4" in keys()
    assert store.get(old)["status"] == st.EXPIRED and store.get(old)["video_url"] is None
    assert partitions(instance) == {f"exp-{new}"}
    assert run_retention(settings, instance)["objects_deleted"] == 0


def manifest_clips(client, bucket: str, request_id: int) -> set[str]:
    key = f"exports/work/exp-{request_id}/clips.json"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return {entry["key"] for entry in manifest["clips"]}


# ---- scratch directories


def age(path: Path, hours: float) -> None:
    """Set the mtime of `path` and everything in it `hours` back."""
    moment = time.time() - hours * 3600
    for inner in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(inner, (moment, moment), follow_symlinks=False)


def test_temp_sweep_removes_only_old_entries_with_our_prefix(settings, instance):
    work = Path(settings.media.work_dir)
    work.mkdir(parents=True)
    old_dir = work / "export-exp-1-clips-abc123"
    (old_dir / "nested").mkdir(parents=True)
    (old_dir / "nested" / "clip-0001.download").write_bytes(b"x" * 100)
    (old_dir / "source-0001.mp4").write_bytes(b"y" * 50)
    age(old_dir, 30)
    recent_inside = work / "export-exp-2-encode-def456"  # old dir, but a file written just now
    recent_inside.mkdir()
    (recent_inside / "segment.mp4").write_bytes(b"z")
    age(recent_inside, 30)
    os.utime(recent_inside / "segment.mp4")
    fresh = work / "export-exp-3-encode-ghi789"
    fresh.mkdir()
    stray_file = work / "export-exp-4-clips-x.partial"
    stray_file.write_bytes(b"p" * 7)
    age(stray_file, 48)
    not_ours = work / "someone-else"
    not_ours.mkdir()
    age(not_ours, 100)

    defs = Definitions.merge(build_retention_defs(), Definitions(resources=settings.resources()))
    job = defs.resolve_job_def("temp_sweep_job")

    def run(**config) -> dict:
        result = job.execute_in_process(
            instance=instance, run_config={"ops": {"sweep_temp_files": {"config": config}}}
        )
        assert result.success
        (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
        return {k: v.value for k, v in output.event_specific_data.metadata.items()}

    dry = run(dry_run=True)
    assert dry["entries_removed"] == 2 and dry["bytes_freed"] == 157
    assert old_dir.exists() and stray_file.exists()

    report = run()
    assert sorted(report["removed"]) == [old_dir.name, stray_file.name]
    assert report["entries_kept"] == 2 and report["bytes_freed"] == 157
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [recent_inside.name, fresh.name, not_ours.name]
    )
    assert run()["entries_removed"] == 0  # twice is a no-op

    # A shorter max age takes the rest of ours, never the others'.
    age(recent_inside, 1)
    age(fresh, 1)
    assert sorted(run(max_age_hours=0.5)["removed"]) == sorted([recent_inside.name, fresh.name])
    assert [p.name for p in work.iterdir()] == [not_ours.name]


def test_temp_sweep_without_a_work_dir_is_harmless(tmp_path):
    assert sweep_temp(tmp_path / "missing").removed == []
