"""`published_video`'s work as a function: the video and its poster at their stable keys and
the row complete; the quota, checked before anything is visible; publishing again once the
work copy is gone; a video published without a poster when FFmpeg cannot make one."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta

import pytest

from export_pipeline.defs.export.publish import check_quota, publish
from export_pipeline.defs.resources import MediaTools
from export_pipeline.domain import status as st
from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.layout import (
    encoded_key,
    encoded_record_key,
    manifest_key,
    partition_key,
    poster_key,
    video_key,
)
from export_pipeline.io.storage import LocalStorage
from export_pipeline_tests.defs.export.conftest import RUN_ID, step_of

DURATION_S = 2.0  # landscape.mp4 of the shared samples


@pytest.fixture
def encoded(store, storage, sample_dir):
    """A request whose encode is done: the encoded video (a sample clip standing in for it)
    and its record in the work area, the clip manifest; its row `processing` in this run."""
    request_id = store.insert(project_id="p", user_id="u", resolution="720p", quality="low",
                              clips=[{"url": "https://cdn.example/a.mp4", "scene_number": 1}],
                              retention_days=3)  # fmt: skip
    key = partition_key(request_id)
    video = sample_dir / "landscape.mp4"
    storage.put_file(video, encoded_key(key, "mp4"), content_type="video/mp4")
    storage.put_json(encoded_record_key(key), {
        "key": encoded_key(key, "mp4"), "format": "mp4", "bytes": video.stat().st_size,
        "duration_s": DURATION_S, "width": 1280, "height": 720, "clip_count": 1, "seconds": 1.0,
    })  # fmt: skip
    storage.put_json(manifest_key(key), {"clips": [], "seconds": 0.5})
    return step_of(store, request_id, band=(97, 100))


def test_publishing_puts_the_video_and_its_poster_in_place_and_completes_the_row(
    encoded, storage, media, sample_dir
):
    key = encoded.partition_key
    result = publish(encoded, storage, media)

    assert storage.get_bytes(video_key(key, "mp4")) == (sample_dir / "landscape.mp4").read_bytes()
    assert storage.get_bytes(poster_key(key))[:3] == b"\xff\xd8\xff"  # a JPEG
    assert not storage.exists(encoded_key(key, "mp4"))  # the work copy would count twice
    row = encoded.store.get(encoded.request_id)
    assert row["status"] == st.COMPLETE and row["progress"] == 100
    assert row["video_url"] == storage.url(video_key(key, "mp4"))
    assert row["poster_url"] == storage.url(poster_key(key))
    assert row["output_duration_s"] == DURATION_S
    assert row["expires_at"] - row["completed_at"] == timedelta(days=3)  # its retention_days
    assert result.metadata["storage_key"] == video_key(key, "mp4")


def test_publishing_again_uses_the_published_video_when_the_work_copy_is_gone(
    encoded, store, storage, media
):
    publish(encoded, storage, media)
    published = storage.get_bytes(video_key(encoded.partition_key, "mp4"))
    store.transition(encoded.request_id, st.PROCESSING, run_id=RUN_ID)  # re-executed

    publish(encoded, storage, media)

    assert storage.get_bytes(video_key(encoded.partition_key, "mp4")) == published
    assert store.get(encoded.request_id)["status"] == st.COMPLETE


def test_nothing_to_publish_is_a_permanent_failure(encoded, storage, media):
    storage.delete(encoded_key(encoded.partition_key, "mp4"))
    with pytest.raises(ExportFailure, match="materialize encoded_video") as failure:
        publish(encoded, storage, media)
    assert (failure.value.cause, failure.value.permanent) == (FailureCause.STORAGE, True)


def test_without_a_poster_the_video_is_published_and_an_old_poster_removed(
    encoded, storage, tmp_path
):
    """FFmpeg cannot make the poster (here: an FFmpeg that always fails): the video is
    published all the same, and a poster of an earlier export of this request, which would
    show another video, is deleted."""
    storage.put_bytes(poster_key(encoded.partition_key), b"an older export's poster")
    media = MediaTools(work_dir=str(tmp_path / "work"), ffmpeg=shutil.which("false"))

    result = publish(encoded, storage, media)

    assert storage.exists(video_key(encoded.partition_key, "mp4"))
    assert not storage.exists(poster_key(encoded.partition_key))
    row = encoded.store.get(encoded.request_id)
    assert row["status"] == st.COMPLETE and row["poster_url"] is None
    assert "no poster" in result.metadata["poster"].value


def test_over_the_quota_nothing_is_published(encoded, storage, media):
    video = storage.size(encoded_key(encoded.partition_key, "mp4"))
    # Room for the video but not for its poster (the work copy it replaces counts as freed).
    with pytest.raises(ExportFailure, match=r"storage is full: this video is ") as failure:
        publish(encoded, storage, media, quota_bytes=storage.total_bytes() + 100)
    assert (failure.value.cause, failure.value.permanent) == (FailureCause.STORAGE, True)
    assert not storage.exists(video_key(encoded.partition_key, "mp4"))
    assert storage.size(encoded_key(encoded.partition_key, "mp4")) == video  # kept for a retry
    assert encoded.store.get(encoded.request_id)["status"] == st.PROCESSING


@pytest.mark.parametrize(
    ("quota", "new", "replaced", "refused"),
    [
        (0, 10**12, 0, False),  # no quota
        (1000, 400, 0, False),  # 500 used + 400 new: fits
        (1000, 500, 0, False),  # exactly full
        (1000, 501, 0, True),
        (1000, 900, 400, False),  # the 400 it replaces are freed first
        (1000, 901, 400, True),
    ],
)
def test_the_quota_counts_what_is_used_less_what_is_replaced(
    tmp_path, quota, new, replaced, refused
):
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("videos/other.mp4", b"x" * 500)
    if not refused:
        check_quota(storage, quota, new, replaced)
        return
    with pytest.raises(ExportFailure) as failure:
        check_quota(storage, quota, new, replaced)
    assert re.search(r"this video is .* and .* of the .* quota are used", str(failure.value))
    assert (failure.value.cause, failure.value.permanent) == (FailureCause.STORAGE, True)
