"""`encoded_video`'s steps as functions: the plan's batches and step names, the segment
cache in storage, the segments rendered by their steps and joined, and why an encode that
cannot find what the download step archived fails for good."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from export_pipeline.defs.export.clips import download_clips
from export_pipeline.defs.export.encode import (
    StorageSegmentCache,
    _clips_of,
    join_encode,
    open_encode,
    plan_encode,
    render_batch,
)
from export_pipeline.defs.resources import ClipDownloads, MediaTools
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.layout import (
    encoded_key,
    encoded_record_key,
    manifest_key,
    partition_key,
    plan_key,
)
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import LocalStorage
from export_pipeline_tests.cdn import FakeCDN
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.defs.export.conftest import step_of

AUDIO = 3  # the plan's part after the three segments: the audio track


@pytest.fixture(scope="module")
def archive(sample_dir, tmp_path_factory) -> tuple[list[dict], Path]:
    """Three clips (2 s, 1 s of 2 s, 1.5 s), crossfading into the third, through the real
    download step once for the module: the clip list and the storage it archived them in
    (the clips, and request 1's manifest)."""
    root = tmp_path_factory.mktemp("archive")
    store = RequestStore.from_url(f"sqlite:///{root / 'app.db'}")
    store.create_schema()
    storage = LocalStorage(root / "storage")
    with FakeCDN(sample_dir) as cdn:
        clips = [
            clip(cdn.url("landscape.mp4"), 1),
            clip(cdn.url("portrait.mp4"), 2, duration=1.0),
            {**clip(cdn.url("classic.mp4"), 3),
             "transition": {"type": "crossfade", "duration": 0.5}},
        ]  # fmt: skip
        request_id = insert(store, clips)
        downloads = ClipDownloads(allow_http=True, private_networks=["127.0.0.0/8"])
        media = MediaTools(work_dir=str(root / "work"))
        download_clips(step_of(store, request_id), storage, media, downloads)
    return clips, storage.root


def insert(store, clips: list[dict], **fields) -> int:
    return store.insert(project_id="p", user_id="u", resolution="720p", quality="low",
                        clips=clips, **fields)  # fmt: skip


@pytest.fixture
def clips(archive) -> list[dict]:
    return archive[0]


@pytest.fixture
def three(archive, store, storage):
    """The step of this test's request of those clips, its download step done (a copy of
    the module's archive)."""
    clips, archived = archive
    shutil.copytree(archived, storage.root, dirs_exist_ok=True)
    request_id = insert(store, clips)
    assert partition_key(request_id) == "exp-1"  # the archive's manifest is request 1's
    return step_of(store, request_id)


@pytest.mark.parametrize(
    ("per_step", "expected"),
    [
        (1, [("audio", [3]), ("segment_0000", [0]), ("segment_0001", [1]), ("segment_0002", [2])]),
        (2, [("audio_segment_0000", [3, 0]), ("segments_0001_0002", [1, 2])]),
        (0, [("audio_segments_0000_0002", [3, 0, 1, 2])]),
    ],
)
def test_the_plan_batches_the_parts_audio_track_first(three, media, storage, per_step, expected):
    media = MediaTools(work_dir=media.work_dir, segments_per_step=per_step)
    assert plan_encode(three, media, storage, attempt=0) == expected
    record = storage.get_json(plan_key(three.partition_key))
    assert record["attempt"] == 0 and record["cached"] == 0 and len(record["keys"]) == 3
    # The row sums progress over the parts now: one segment done is a part of the whole.
    assert 0 < three.store.segment_progress(three.request_id, {0: 1.0}) < 1


def test_segments_in_the_cache_are_not_planned_again(three, media, storage, tmp_path):
    segments = open_encode(three, storage, media, tmp_path / "scratch", 0).plan().segments
    cache = StorageSegmentCache(storage)
    rendered = tmp_path / "segment.mp4"
    rendered.write_bytes(b"pictures")
    cache.store(segments[1].video_name, rendered)

    assert plan_encode(three, media, storage, 0) == [
        ("audio", [AUDIO]), ("segment_0000", [0]), ("segment_0002", [2])
    ]  # fmt: skip
    assert storage.get_json(plan_key(three.partition_key))["cached"] == 1
    # The cache is storage under segments/, typed by extension.
    assert cache.has(segments[1].video_name) and not cache.has(None) and not cache.has("")
    assert cache.fetch(segments[1].video_name, tmp_path / "back.mp4")
    assert (tmp_path / "back.mp4").read_bytes() == b"pictures"
    assert not cache.fetch("no-such-segment.mp4", tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()


def test_a_segment_reads_its_clip_and_the_next_one_it_fades_into(three, media, storage, tmp_path):
    segments = open_encode(three, storage, media, tmp_path / "scratch", 0).plan().segments
    assert [s.clip for s in segments] == [0, 1, 2]
    assert _clips_of([segments[0]]) == {0}
    assert _clips_of([segments[1]]) == {1, 2}  # it ends with the crossfade into clip 3
    assert _clips_of(segments) == {0, 1, 2} and _clips_of([]) == set()


def test_the_segment_steps_render_into_the_cache_and_the_join_joins_them(three, media, storage):
    batches = plan_encode(three, media, storage, attempt=0)
    parts = [render_batch(three, media, storage, indexes, attempt=0) for _, indexes in batches]

    track = next(p["audio_track"] for p in parts if p["audio_track"])
    assert storage.exists(track)
    assert [p["attempt"] for p in parts] == [None, 0, 0, 0]  # the audio track has no pictures
    join_encode(three, media, storage, parts)

    record = storage.get_json(encoded_record_key(three.partition_key))
    assert record["key"] == encoded_key(three.partition_key, "mp4") and storage.exists(
        record["key"]
    )
    assert (record["segments"], record["reused_segments"], record["rendered_in_join"]) == (3, 0, 0)
    assert record["clip_count"] == 3 and record["attempt"] == 1
    # 2 + 1 + 1.5 s, less the 0.5 s the crossfade overlaps
    assert abs(record["duration_s"] - 4.0) < 0.1, record
    assert not storage.exists(track)  # the audio track is used up by the join
    # Encoding again renders nothing: every segment is in the cache.
    assert plan_encode(three, media, storage, attempt=0) == [("audio", [AUDIO])]


def _manifest_without(step, storage, what: str) -> None:
    key = manifest_key(step.partition_key)
    manifest = storage.get_json(key)
    if what == "clip":
        manifest["clips"] = manifest["clips"][1:]
    elif what == "changed url":
        manifest["clips"][0]["url"] += "?v=2"
    storage.put_json(key, manifest)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("manifest", "the clip manifest is missing: materialize downloaded_clips"),
        ("clip", "clip 1 (scene 1) is not in the clip manifest: re-run downloaded_clips"),
        ("changed url", "clip 1 (scene 1) is not in the clip manifest"),
        ("soundtrack", "the soundtrack is not in the clip manifest: re-run downloaded_clips"),
        ("captions", "the captions are missing from the clip manifest: re-run downloaded_clips"),
    ],
)
def test_what_the_download_step_did_not_archive_fails_the_encode_for_good(
    three, clips, store, media, storage, missing, message
):
    step = three
    if missing == "manifest":
        storage.delete(manifest_key(step.partition_key))
    elif missing in ("clip", "changed url"):
        _manifest_without(step, storage, missing)
    else:  # a request asking for it, whose manifest (the same clips) lacks it
        extra = {"soundtrack": {"url": "http://127.0.0.1:9/song.mp3"}} if missing == "soundtrack" \
            else {"captions": {"url": "http://127.0.0.1:9/subs.srt", "format": "srt"}}  # fmt: skip
        request_id = insert(store, clips, **extra)
        step = step_of(store, request_id)
        storage.put_json(
            manifest_key(partition_key(request_id)),
            storage.get_json(manifest_key(three.partition_key)),
        )

    with pytest.raises(ExportFailure, match=re.escape(message)) as failure:
        plan_encode(step, media, storage, attempt=0)
    assert failure.value.cause == FailureCause.STORAGE
    assert failure.value.permanent  # retrying cannot make it appear: re-run the download
