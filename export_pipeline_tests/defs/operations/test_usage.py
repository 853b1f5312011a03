"""Storage usage (issue 14): bytes and objects by kind and the top users, against objects
the test writes, on local storage and on S3 (moto's server over loopback), as metadata of
a real `export_metrics` materialization; the quota check warns from 80 %."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, Definitions

from export_pipeline.defs.operations.metrics import (
    METADATA_KEYS,
    QUOTA_CHECK_NAME,
    build_export_metrics,
)
from export_pipeline.defs.operations.usage import storage_usage, usage_of
from export_pipeline.domain.layout import KINDS, classify_key
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import LocalStorage, S3Storage, Storage, make_s3_client
from export_pipeline_tests.conftest import clip

SHA = "ab" * 32
MB = 1024**2


@pytest.mark.parametrize(
    ("key", "kind", "request_id"),
    [
        ("videos/exp-12.mp4", "videos", 12),
        ("videos/exp-12.webm", "videos", 12),
        ("videos/exp-12.jpg", "posters", 12),
        (f"clips/sha256/{SHA}.mp4", "clips", None),
        (f"clips/by-url/{SHA}.json", "clip_index", None),
        (f"soundtracks/sha256/{SHA}", "soundtracks", None),
        (f"segments/{SHA}/0.000-end-copy.mp4", "segments", None),
        (f"segments/{SHA}/0.000-end-a1.wav", "segments", None),
        ("work/exp-7/clips.json", "work", 7),
        ("work/exp-7/encoded.mp4", "work", 7),
        ("dagster/io/run/step/result", "other", None),
        ("videos/readme.txt", "other", None),
        ("work/scratch.txt", "other", None),
    ],
)
def test_classify_key(key, kind, request_id):
    assert classify_key(key) == (kind, request_id)


def add_request(store: RequestStore, user: str) -> int:
    return store.insert(
        project_id="p", user_id=user, resolution="720p", quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )  # fmt: skip


def populate(store: RequestStore, storage: Storage) -> dict:
    """Three users' exports and shared objects of every kind; returns what usage must say."""
    alice_1, alice_2, bob = (
        add_request(store, "alice"),
        add_request(store, "alice"),
        add_request(store, "bob"),
    )
    carol = add_request(store, "carol")
    objects = {
        f"videos/exp-{alice_1}.mp4": 5000,
        f"videos/exp-{alice_1}.jpg": 300,
        f"work/exp-{alice_1}/clips.json": 100,
        f"videos/exp-{alice_2}.webm": 4000,
        f"work/exp-{alice_2}/encoded.mp4": 2000,  # a work copy, before publish
        f"videos/exp-{bob}.mp4": 7000,
        f"videos/exp-{bob}.jpg": 200,
        f"work/exp-{carol}/clips.json": 50,
        "videos/exp-999999.mp4": 10,  # its row is gone
        f"clips/sha256/{SHA}.mp4": 20000,
        f"clips/sha256/{'cd' * 32}.mp4": 10000,
        f"clips/by-url/{SHA}.json": 80,
        f"soundtracks/sha256/{SHA}": 3000,
        f"segments/{SHA}/0.000-end-copy.mp4": 6000,
        f"segments/{SHA}/0.000-end-a1.wav": 1500,
        "other/notes.txt": 7,
    }
    for key, size in objects.items():
        storage.put_bytes(key, b"x" * size)
    return {
        "bytes": {
            "videos": 16010, "posters": 500, "clips": 30000, "clip_index": 80,
            "soundtracks": 3000, "segments": 7500, "work": 2150, "other": 7,
        },
        "objects": {
            "videos": 4, "posters": 2, "clips": 2, "clip_index": 1, "soundtracks": 1,
            "segments": 2, "work": 3, "other": 1,
        },
        "top": [
            {"user_id": "alice", "bytes": 11400, "videos_bytes": 9000, "posters_bytes": 300,
             "work_bytes": 2100, "exports": 2},
            {"user_id": "bob", "bytes": 7200, "videos_bytes": 7000, "posters_bytes": 200,
             "work_bytes": 0, "exports": 1},
            {"user_id": "carol", "bytes": 50, "videos_bytes": 0, "posters_bytes": 0,
             "work_bytes": 50, "exports": 1},
            {"user_id": "(unknown)", "bytes": 10, "videos_bytes": 10, "posters_bytes": 0,
             "work_bytes": 0, "exports": 1},
        ],
        "total": sum(objects.values()),
    }  # fmt: skip


def check_usage(storage: Storage, store: RequestStore, expected: dict) -> None:
    usage = storage_usage(storage, store, quota_bytes=100_000)
    assert usage.bytes == expected["bytes"] and usage.objects == expected["objects"]
    assert usage.total_bytes == expected["total"] == storage.total_bytes()
    assert usage.top_users() == expected["top"]
    assert usage.top_users(1) == expected["top"][:1]
    assert usage.used_share == pytest.approx(expected["total"] / 100_000)
    table = usage.markdown()
    assert "of the 97.7 KB quota" in table
    assert table.index("| alice |") < table.index("| bob |") < table.index("| carol |")


def test_usage_on_local_storage(db_store):
    store, settings = db_store
    storage = LocalStorage(Path(settings.storage.local_root))
    expected = populate(store, storage)
    check_usage(storage, store, expected)
    (storage.root / "videos" / ".exp-1.mp4.abc.partial").write_bytes(b"half")  # in progress
    check_usage(storage, store, expected)  # not an object yet


def test_usage_on_s3_is_one_paginated_listing(settings, store, s3_server, s3_env, s3_bucket):
    client = make_s3_client(s3_server.endpoint_url, session=s3_server.boto_session())
    storage = S3Storage(client, s3_bucket, prefix="exports")
    expected = populate(store, storage)
    # Enough segment parts for a second listing page (S3 lists 1000 keys per page).
    many = [f"segments/{'ef' * 32}/{n:05d}-a1.wav" for n in range(1000)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: storage.put_bytes(key, b"s"), many))
    expected["bytes"]["segments"] += 1000
    expected["objects"]["segments"] += 1000
    expected["total"] += 1000
    client.put_object(Bucket=s3_bucket, Key="elsewhere/x", Body=b"not ours")  # outside the prefix

    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    usage = storage_usage(storage, store, quota_bytes=100_000)
    assert calls == ["ListObjectsV2", "ListObjectsV2"]  # two pages, no HEAD per object
    assert usage.bytes == expected["bytes"] and usage.objects == expected["objects"]
    assert usage.top_users() == expected["top"]
    assert usage.total_bytes == expected["total"]


def test_usage_without_a_store_or_objects():
    usage = usage_of([("videos/exp-1.mp4", 5)], lambda ids: {})
    assert usage.top_users() == [
        {"user_id": "(unknown)", "bytes": 5, "videos_bytes": 5, "posters_bytes": 0,
         "work_bytes": 0, "exports": 1},
    ]  # fmt: skip
    empty = usage_of([], lambda ids: pytest.fail("no ids, no query"))
    assert empty.total_bytes == 0 and empty.used_share is None
    assert "(no quota set)" in empty.markdown() and "| (none) |" in empty.markdown()


def materialize(settings, instance):
    defs = Definitions.merge(build_export_metrics(), Definitions(resources=settings.resources()))
    result = defs.resolve_job_def("export_metrics_job").execute_in_process(instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("export_metrics")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in materialization.metadata.items()}, checks[QUOTA_CHECK_NAME]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_the_metrics_asset_reports_usage_and_warns_from_80_percent(
    backend, request, settings, store, instance
):
    if backend == "s3":
        settings = request.getfixturevalue("s3_settings")
    storage = settings.storage.open()
    expected = populate(store, storage)
    total = expected["total"]

    # No quota: passes, and says why.
    metadata, check = materialize(settings, instance)
    assert tuple(metadata) == METADATA_KEYS
    for kind in KINDS:
        assert metadata[f"storage_{kind}_bytes"] == expected["bytes"][kind]
        assert metadata[f"storage_{kind}_objects"] == expected["objects"][kind]
    assert metadata["stored_bytes"] == total and metadata["storage_objects"] == 16
    assert metadata["storage_top_users"] == expected["top"]
    assert metadata["storage_quota_bytes"] is None and metadata["storage_used_pct"] is None
    assert "| clips |" in metadata["storage_usage"]
    assert check.passed and "no storage quota set" in check.description

    # Below 80 %: passes. At 80 %: warns (not an error), naming the biggest kind.
    below = settings.replace(storage={"quota_mb": (int(total / 0.79)) / 1024**2})
    metadata, check = materialize(below, instance)
    assert check.passed and metadata["storage_used_pct"] == pytest.approx(79.0, abs=0.01)
    at = settings.replace(storage={"quota_mb": (int(total / 0.80)) / 1024**2})
    metadata, check = materialize(at, instance)
    assert metadata["storage_used_pct"] >= 80.0
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "% full" in check.description and "most of it: clips" in check.description
    assert check.metadata["warn_at_pct"].value == 80.0


def test_the_generic_listing_gives_the_same_sizes(tmp_path):
    """`Storage.list_sizes`' fallback (a size per key) agrees with the one-pass listing."""
    storage = LocalStorage(tmp_path)
    for key, size in (("videos/exp-1.mp4", 3), ("work/exp-1/a.json", 2), ("z", 1)):
        storage.put_bytes(key, b"x" * size)
    assert list(Storage.list_sizes(storage)) == list(storage.list_sizes())
    assert list(storage.list_sizes("work/")) == [("work/exp-1/a.json", 2)]
