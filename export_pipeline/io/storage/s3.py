"""Storage in an S3-compatible bucket (AWS S3, MinIO, moto), through a boto3 S3 client.

Atomicity comes from S3 itself: an object appears at a key only when its PutObject,
CompleteMultipartUpload or CopyObject succeeds, and an update to a key is atomic (readers
get the old or the new object, never a partial one). Big files use boto3's managed
transfer, which uploads parts in parallel and aborts the multipart upload on failure.
Parts of uploads interrupted by a crash stay billed until aborted: give production buckets
a lifecycle rule with `AbortIncompleteMultipartUpload`.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from export_pipeline.io.storage.base import (
    MAX_URL_EXPIRY_SECONDS,
    PARTIAL_SUFFIX,
    MiB,
    ObjectNotFound,
    Storage,
    validate_key,
    validate_prefix,
)

# S3 refuses multipart parts under 5 MiB (except the last one).
MIN_PART_BYTES = 5 * MiB

__all__ = ["MAX_URL_EXPIRY_SECONDS", "MiB", "S3Storage", "make_s3_client"]

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


def make_s3_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    max_attempts: int = 5,
    session: boto3.session.Session | None = None,
) -> Any:
    """A boto3 S3 client; credentials come from the usual AWS environment/role chain.

    Pass a `session` to take credentials from it instead (tests, named profiles).

    Built with boto3 directly rather than `dagster_aws.s3.S3Resource().get_client()`:
    S3Resource accepts no botocore `Config`, and without an explicit `signature_version`
    botocore presigns GET URLs with SigV2 in the older regions that still accept it
    (us-east-1 included). AWS is turning SigV2 off, other regions and many S3-compatible
    servers accept only SigV4, and only SigV4 URLs carry the 7-day expiry we configure.
    """
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": max_attempts},
    )
    session = session or boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES


class S3Storage(Storage):
    """Keys map to objects `<prefix><key>` in `bucket`; objects stay private."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        url_expiry_seconds: int = MAX_URL_EXPIRY_SECONDS,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
    ) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name")
        if not 1 <= url_expiry_seconds <= MAX_URL_EXPIRY_SECONDS:
            raise ValueError(
                f"url_expiry_seconds must be between 1 and {MAX_URL_EXPIRY_SECONDS} "
                f"(the SigV4 limit), got {url_expiry_seconds}"
            )
        if multipart_chunksize < MIN_PART_BYTES:
            raise ValueError(
                f"multipart_chunksize must be at least {MIN_PART_BYTES} bytes (S3's minimum "
                f"part size), got {multipart_chunksize}"
            )
        self.client = client
        self.bucket = bucket
        # Kept with a trailing slash so that an object's key is always `prefix + key`.
        prefix = prefix.strip("/")
        self.prefix = validate_prefix(f"{prefix}/") if prefix else ""
        self.url_expiry_seconds = url_expiry_seconds
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )

    @property
    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def object_key(self, key: str) -> str:
        """The key of the S3 object that holds `key`."""
        return self.prefix + validate_key(key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for development and tests)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if not _is_not_found(error):
                raise
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            self.client.create_bucket(
                Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
        else:
            self.client.create_bucket(Bucket=self.bucket)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def put_file(self, local_path: Path, key: str, content_type: str | None = None) -> None:
        self.client.upload_file(
            Filename=str(local_path),
            Bucket=self.bucket,
            Key=self.object_key(key),
            ExtraArgs=self._content_type_args(key, content_type),
            Config=self.transfer_config,
        )

    def get_file(self, key: str, local_path: Path) -> None:
        object_key = self.object_key(key)
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = local_path.with_name(
            f".{local_path.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
        )
        try:
            # Ranged GETs written to disk as they arrive: memory is bounded by boto3's IO
            # queue (max_io_queue x io_chunksize, 25 MiB by default), not by the object size.
            self.client.download_file(
                Bucket=self.bucket,
                Key=object_key,
                Filename=str(tmp_path),
                Config=self.transfer_config,
            )
            os.replace(tmp_path, local_path)
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectNotFound(key) from None
            raise
        finally:
            tmp_path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=data,
            **self._content_type_args(key, content_type),
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectNotFound(key) from None
            raise
        return response["Body"].read()

    def copy(self, src_key: str, dst_key: str) -> None:
        # Managed copy: CopyObject, or UploadPartCopy parts above the threshold, which is
        # what objects over 5 GB need. Content type and metadata are kept.
        try:
            self.client.copy(
                CopySource={"Bucket": self.bucket, "Key": self.object_key(src_key)},
                Bucket=self.bucket,
                Key=self.object_key(dst_key),
                Config=self.transfer_config,
            )
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectNotFound(src_key) from None
            raise

    def delete(self, key: str) -> None:
        # S3 answers 204 for missing keys too.
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def _list_objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            yield from page.get("Contents", [])

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # S3 lists in UTF-8 byte order, which is the same as sorting Python strings.
        return (item["Key"][len(self.prefix) :] for item in self._list_objects(prefix))

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        validate_prefix(prefix)
        # One ListObjectsV2 page (up to 1000 objects) per request; sizes come with the keys.
        return (
            (item["Key"][len(self.prefix) :], int(item["Size"]))
            for item in self._list_objects(prefix)
        )

    def total_bytes(self, prefix: str = "") -> int:
        return sum(size for _key, size in self.list_sizes(prefix))

    def url(self, key: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=self.url_expiry_seconds,
        )

    @staticmethod
    def _content_type_args(key: str, content_type: str | None) -> dict[str, str]:
        # Guessing from the extension gives published .mp4 files `video/mp4`, so browsers
        # play a presigned URL instead of downloading it.
        content_type = content_type or mimetypes.guess_type(key)[0]
        return {"ContentType": content_type} if content_type else {}
