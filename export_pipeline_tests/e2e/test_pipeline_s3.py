"""The same export with S3-compatible storage (moto's server over loopback HTTP)."""

import httpx
import pytest

from export_pipeline.domain import status as st
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export, ffprobe

pytestmark = pytest.mark.e2e


def test_export_to_s3_gives_a_working_presigned_url(
    settings, store, instance, cdn, s3_server, s3_env, s3_client, s3_bucket, tmp_path
):
    settings = settings.replace(
        storage={
            "backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_prefix": "exports",
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_region": "us-east-1",
            "url_expiry_seconds": 3600,
        }
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
        f"exports/work/{part}/plan.json",  # the encode's plan: settings, keys
    ]  # the work copy of the video is gone once published: it would double the video
    archived = [k for k in keys if k.startswith("exports/clips/sha256/")]
    assert len(archived) == 2
    segments = [k for k in keys if k.startswith("exports/segments/")]
    assert len(segments) == 4  # a video and an audio segment per clip, for later re-exports


def test_the_chunks_of_a_long_clip_read_only_their_span_over_http(
    settings, store, instance, cdn, s3_server, s3_env, s3_bucket, tmp_path
):
    """With S3 storage, the step of each chunk of a long archived clip reads it over HTTP
    (a presigned URL, range requests) instead of downloading all of it; the audio track's
    step downloads it (it reads all of it). The video is the one downloading gives."""
    import stat
    import subprocess

    from export_pipeline_tests.e2e.test_fanout import decoded_md5

    source = cdn.root / "long-6s.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=6",
         "-f", "lavfi", "-i", "sine=f=440:d=6", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-g", "25", "-c:a", "aac", "-shortest", str(source)],
        check=True,
    )  # fmt: skip
    logged = tmp_path / "ffmpeg-logged"
    log = tmp_path / "ffmpeg.log"
    logged.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec ffmpeg "$@"\n')
    logged.chmod(logged.stat().st_mode | stat.S_IEXEC)
    storage = dict(
        backend="s3", s3_bucket=s3_bucket, s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1", url_expiry_seconds=3600,
    )  # fmt: skip
    media = dict(max_segment_s=2.0, segments_per_step=1, ffmpeg=str(logged))
    videos = {}
    for prefix, threshold in (("streamed", 0.001), ("fetched", 0)):  # MB; 0: always fetch
        log.unlink(missing_ok=True)
        run = settings.replace(
            storage={**storage, "s3_prefix": prefix},
            media={**media, "stream_sources_mb": threshold},
        )
        request_id, result, _ = export(run, store, instance, [clip(cdn.url("long-6s.mp4"), 1)])
        assert result.success, prefix
        row = store.get(request_id)
        video = tmp_path / f"{prefix}.mp4"
        video.write_bytes(httpx.get(row["video_url"]).content)
        videos[prefix] = video
        encodes = [line for line in log.read_text().splitlines() if "libx264" in line]
        assert len(encodes) == 3  # three chunks of 2 s
        remote = [line for line in encodes if f"-i {s3_server.endpoint_url}/" in line]
        assert len(remote) == (3 if threshold else 0), encodes
        for line in remote:  # HTTP only for that input, reconnecting, and its span alone
            assert "-protocol_whitelist http,https,tcp,tls" in line and "-reconnect 1" in line
            assert " -t 2.000000 " in line
        sound = [line for line in log.read_text().splitlines() if "pcm_s16le" in line]
        assert sound and all(f"{s3_server.endpoint_url}/" not in line for line in sound)
    info = ffprobe(videos["streamed"])
    (v,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert int(v["nb_frames"]) == 150
    assert decoded_md5(videos["streamed"]) == decoded_md5(videos["fetched"])
