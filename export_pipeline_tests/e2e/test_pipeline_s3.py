"""The same export with S3-compatible storage (moto's server over loopback HTTP)."""

from dataclasses import replace

import httpx
import pytest

from export_pipeline.appdb import status as st
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export, ffprobe

pytestmark = pytest.mark.e2e


def test_export_to_s3_gives_a_working_presigned_url(
    settings, store, instance, cdn, s3_server, s3_env, s3_client, s3_bucket, tmp_path
):
    settings = replace(
        settings,
        storage_backend="s3",
        s3_bucket=s3_bucket,
        s3_prefix="exports",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1",
        url_expiry_seconds=3600,
    )
    clips = [clip(cdn.url("landscape.mp4"), 1, duration=1.5), clip(cdn.url("portrait.mp4"), 2)]
    request_id, result, _ = export(settings, store, instance, clips, resolution="720p")
    assert result.success
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE
    url = row["video_url"]
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url

    response = httpx.get(url)
    assert response.status_code == 200
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(response.content)
    assert len(response.content) == row["output_bytes"]
    info = ffprobe(video)
    assert abs(float(info["format"]["duration"]) - 3.5) < 0.1
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}

    # Objects stay private: the same URL without its signature is refused.
    assert httpx.get(url.split("?")[0]).status_code == 403

    # Exactly what the export should leave in the bucket, under the prefix.
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    part = f"exp-{request_id}"
    # Dagster's own objects (what steps hand each other, tiny) sit beside the prefix.
    dagster = [k for k in keys if k.startswith("dagster/io/")]
    assert dagster, "the steps' outputs went through S3"
    keys = [k for k in keys if k not in dagster]
    assert all(k.startswith("exports/") for k in keys)
    own = ("exports/clips/", "exports/segments/")
    assert sorted(k for k in keys if not k.startswith(own)) == [
        f"exports/videos/{part}.jpg",
        f"exports/videos/{part}.mp4",
        f"exports/work/{part}/clips.json",
        f"exports/work/{part}/encoded.json",
        f"exports/work/{part}/plan.json",  # the encode's plan: settings, loudness, keys
    ]  # the work copy of the video is gone once published: it would double the video
    archived = [k for k in keys if k.startswith("exports/clips/sha256/")]
    assert len(archived) == 2
    segments = [k for k in keys if k.startswith("exports/segments/")]
    assert len(segments) == 4  # a video and an audio segment per clip, for later re-exports
