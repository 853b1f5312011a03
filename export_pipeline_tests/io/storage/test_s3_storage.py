"""S3-only behaviour: multipart transfers, atomicity under failures, privacy, content types."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from export_pipeline.io.storage import ObjectNotFound, S3Storage
from export_pipeline_tests.s3_server import S3Server

MiB = 1024 * 1024


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """12 MiB: three parts at the tests' 5 MiB threshold (content need not be random)."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as file:
        for index in range(12):
            file.write(bytes([index]) * MiB)
    return path


def operations(server: S3Server, key: str) -> list[str]:
    return [request.operation for request in server.requests() if request.key == key]


def head(s3_storage: S3Storage, key: str) -> dict[str, Any]:
    return s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.object_key(key))


def pending_uploads(s3_storage: S3Storage) -> list[dict[str, Any]]:
    response = s3_storage.client.list_multipart_uploads(Bucket=s3_storage.bucket)
    return response.get("Uploads", [])


def test_big_file_goes_up_as_a_multipart_upload(
    s3_storage: S3Storage, s3_server: S3Server, big_file: Path
) -> None:
    s3_server.clear_requests()

    s3_storage.put_file(big_file, "videos/exp-42.mp4")

    seen = operations(s3_server, "exports/videos/exp-42.mp4")
    assert seen.count("UploadPart") == 3
    assert seen[0] == "CreateMultipartUpload"
    assert seen[-1] == "CompleteMultipartUpload"
    assert "PutObject" not in seen
    # S3's ETag of a multipart object is "<md5 of the part md5s>-<number of parts>".
    assert head(s3_storage, "videos/exp-42.mp4")["ETag"].strip('"').endswith("-3")


def test_small_file_goes_up_in_one_request(
    s3_storage: S3Storage, s3_server: S3Server, tmp_path: Path
) -> None:
    source = tmp_path / "small.json"
    source.write_bytes(b"{}")
    s3_server.clear_requests()

    s3_storage.put_file(source, "work/exp-42/clips.json")

    assert operations(s3_server, "exports/work/exp-42/clips.json") == ["PutObject"]
    assert "-" not in head(s3_storage, "work/exp-42/clips.json")["ETag"]


def test_aborted_upload_leaves_no_object(
    s3_storage: S3Storage, s3_server: S3Server, big_file: Path
) -> None:
    key = "work/exp-42/encoded/1080p.mp4"
    # The first part goes through, the next is refused (403: not retried).
    s3_server.fail("UploadPart", key=f"exports/{key}", after=1, status=403, code="AccessDenied")
    s3_server.clear_requests()

    with pytest.raises(S3UploadFailedError, match="AccessDenied"):
        s3_storage.put_file(big_file, key)
    s3_server.clear_failures()

    seen = [
        (request.operation, request.status)
        for request in s3_server.requests()
        if request.key == f"exports/{key}"
    ]
    assert ("UploadPart", 200) in seen  # the upload really was under way
    assert ("UploadPart", 403) in seen
    assert ("AbortMultipartUpload", 204) in seen
    assert "CompleteMultipartUpload" not in [operation for operation, _ in seen]
    assert not s3_storage.exists(key)
    assert list(s3_storage.list_keys()) == []
    assert pending_uploads(s3_storage) == []


def test_aborted_upload_keeps_the_previous_object(
    s3_storage: S3Storage, s3_server: S3Server, big_file: Path
) -> None:
    s3_storage.put_bytes("videos/exp-42.mp4", b"previous publication")
    s3_server.fail(
        "UploadPart", key="exports/videos/exp-42.mp4", after=1, status=403, code="AccessDenied"
    )

    with pytest.raises(S3UploadFailedError):
        s3_storage.put_file(big_file, "videos/exp-42.mp4")
    s3_server.clear_failures()

    assert s3_storage.get_bytes("videos/exp-42.mp4") == b"previous publication"
    assert pending_uploads(s3_storage) == []


def test_failed_download_leaves_the_local_file_untouched(
    s3_storage: S3Storage, s3_server: S3Server, big_file: Path, tmp_path: Path
) -> None:
    s3_storage.put_file(big_file, "clips/sha256/abc.mp4")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    target = downloads / "clip.mp4"
    target.write_bytes(b"what was there before")
    # Downloads of big objects are ranged GETs: let the first through, refuse the rest.
    s3_server.fail(
        "GetObject", key="exports/clips/sha256/abc.mp4", after=1, status=403, code="AccessDenied"
    )

    with pytest.raises(ClientError, match="AccessDenied"):
        s3_storage.get_file("clips/sha256/abc.mp4", target)
    s3_server.clear_failures()

    assert target.read_bytes() == b"what was there before"
    assert [path.name for path in downloads.iterdir()] == ["clip.mp4"]


def test_transient_server_errors_are_retried(s3_storage: S3Storage, s3_server: S3Server) -> None:
    s3_server.fail("PutObject", key="exports/work/exp-42/clips.json", times=1, status=503)

    s3_storage.put_bytes("work/exp-42/clips.json", b"{}")

    assert s3_storage.get_bytes("work/exp-42/clips.json") == b"{}"
    statuses = [
        request.status
        for request in s3_server.requests()
        if request.key == "exports/work/exp-42/clips.json" and request.operation == "PutObject"
    ]
    assert statuses[-2:] == [503, 200]


def test_errors_other_than_not_found_are_not_hidden(
    s3_storage: S3Storage, s3_server: S3Server
) -> None:
    s3_server.fail("HeadObject", key="exports/videos/x.mp4", status=403, code="AccessDenied")
    try:
        with pytest.raises(ClientError):
            s3_storage.exists("videos/x.mp4")
        with pytest.raises(ClientError):
            s3_storage.size("videos/x.mp4")
    finally:
        s3_server.clear_failures()


def test_objects_are_private_and_urls_are_presigned(
    s3_storage: S3Storage, s3_server: S3Server
) -> None:
    s3_storage.put_bytes("videos/exp-42.mp4", b"video")

    url = s3_storage.url("videos/exp-42.mp4")
    query = parse_qs(urlparse(url).query)
    unsigned_url = f"{s3_server.endpoint_url}/{s3_storage.bucket}/exports/videos/exp-42.mp4"

    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(7 * 24 * 3600)]
    assert httpx.get(url).content == b"video"
    assert httpx.get(unsigned_url).status_code == 403


def test_the_server_would_serve_a_public_object_unsigned(
    s3_storage: S3Storage, s3_server: S3Server
) -> None:
    """Control for the privacy test: the 403 above comes from the object being private."""
    s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key="exports/public.txt", Body=b"hi", ACL="public-read"
    )

    unsigned_url = f"{s3_server.endpoint_url}/{s3_storage.bucket}/exports/public.txt"
    assert httpx.get(unsigned_url).content == b"hi"


def test_url_lifetime_is_configurable(s3_client: Any, s3_bucket: str) -> None:
    storage = S3Storage(s3_client, s3_bucket, url_expiry_seconds=3600)

    query = parse_qs(urlparse(storage.url("videos/exp-42.mp4")).query)

    assert query["X-Amz-Expires"] == ["3600"]


def test_content_types(s3_storage: S3Storage, tmp_path: Path) -> None:
    source = tmp_path / "video"
    source.write_bytes(b"x")

    s3_storage.put_file(source, "videos/exp-42.mp4")
    s3_storage.put_json("work/exp-42/clips.json", {})
    s3_storage.put_bytes("work/exp-42/notes", b"x", content_type="text/plain")
    s3_storage.put_bytes("work/exp-42/blob", b"x")

    assert head(s3_storage, "videos/exp-42.mp4")["ContentType"] == "video/mp4"
    assert head(s3_storage, "work/exp-42/clips.json")["ContentType"] == "application/json"
    assert head(s3_storage, "work/exp-42/notes")["ContentType"] == "text/plain"
    assert head(s3_storage, "work/exp-42/blob")["ContentType"] == "binary/octet-stream"


def test_big_copy_is_a_server_side_multipart_copy(
    s3_storage: S3Storage, s3_server: S3Server, big_file: Path
) -> None:
    s3_storage.put_file(big_file, "work/exp-42/encoded/abc", content_type="video/mp4")
    s3_server.clear_requests()

    s3_storage.copy("work/exp-42/encoded/abc", "videos/exp-42.mp4")

    seen = operations(s3_server, "exports/videos/exp-42.mp4")
    assert seen.count("UploadPartCopy") == 3
    assert "UploadPart" not in seen  # no bytes went through the client
    copied = head(s3_storage, "videos/exp-42.mp4")
    assert copied["ContentType"] == "video/mp4"
    assert copied["ContentLength"] == big_file.stat().st_size
    expected = hashlib.sha256(big_file.read_bytes()).hexdigest()
    assert hashlib.sha256(s3_storage.get_bytes("videos/exp-42.mp4")).hexdigest() == expected


def test_small_copy_keeps_the_content_type(s3_storage: S3Storage, s3_server: S3Server) -> None:
    s3_storage.put_bytes("work/a", b"x", content_type="video/mp4")
    s3_server.clear_requests()

    s3_storage.copy("work/a", "work/b")

    assert operations(s3_server, "exports/work/b") == ["CopyObject"]
    assert head(s3_storage, "work/b")["ContentType"] == "video/mp4"


def test_keys_outside_the_prefix_are_invisible(s3_storage: S3Storage) -> None:
    for key in ("other/x", "exportsX/y", "exports"):
        s3_storage.client.put_object(Bucket=s3_storage.bucket, Key=key, Body=b"xx")
    s3_storage.put_bytes("a", b"x")

    assert list(s3_storage.list_keys()) == ["a"]
    assert s3_storage.total_bytes() == 1
    assert not s3_storage.exists("x")


def test_listing_follows_pages(s3_storage: S3Storage, s3_server: S3Server) -> None:
    keys = [f"clips/{index}" for index in range(5)]
    for key in keys:
        s3_storage.put_bytes(key, b"xx")
    s3_server.clear_requests()
    s3_server.set_list_page_size(2)
    try:
        listed = list(s3_storage.list_keys("clips/"))
        total = s3_storage.total_bytes()
    finally:
        s3_server.set_list_page_size(None)

    assert listed == keys
    assert total == 10
    lists = [r for r in s3_server.requests() if r.operation == "ListObjectsV2"]
    assert len(lists) == 6  # three pages each


@pytest.mark.parametrize("prefix", ["exports", "exports/", "/exports/"])
def test_prefix_is_normalised(s3_client: Any, s3_bucket: str, prefix: str) -> None:
    storage = S3Storage(s3_client, s3_bucket, prefix=prefix)
    storage.put_bytes("a", b"x")

    assert storage.object_key("a") == "exports/a"
    assert storage.describe == f"s3://{s3_bucket}/exports/"


def test_ensure_bucket(s3_client: Any) -> None:
    storage = S3Storage(s3_client, "bucket-made-by-ensure")
    with pytest.raises(ClientError):
        storage.put_bytes("a", b"x")

    storage.ensure_bucket()
    storage.ensure_bucket()  # already there: no error
    storage.put_bytes("a", b"x")

    assert storage.get_bytes("a") == b"x"


def test_missing_bucket_is_not_object_not_found(s3_client: Any) -> None:
    storage = S3Storage(s3_client, "no-such-bucket-here")

    with pytest.raises(ClientError) as caught:
        storage.get_bytes("a")

    assert not isinstance(caught.value, ObjectNotFound)
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": ""}, "bucket"),
        ({"url_expiry_seconds": 0}, "url_expiry_seconds"),
        ({"url_expiry_seconds": 7 * 24 * 3600 + 1}, "url_expiry_seconds"),
        ({"multipart_chunksize": 4 * MiB}, "multipart_chunksize"),
        ({"prefix": "a/../b"}, "storage prefix"),
    ],
)
def test_bad_settings_are_rejected(s3_client: Any, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"bucket": "some-bucket", **kwargs}
    with pytest.raises(ValueError, match=message):
        S3Storage(s3_client, **arguments)
