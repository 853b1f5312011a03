"""The Dagster resource that chooses and builds the storage backend from configuration."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from export_pipeline.storage.base import Storage
from export_pipeline.storage.local import LocalStorage
from export_pipeline.storage.s3 import MiB, S3Storage, make_s3_client

BACKENDS = ("local", "s3")


class StorageResource(ConfigurableResource):
    """Where the pipeline keeps clips, manifests and videos; `open()` returns the `Storage`.

    S3 credentials are not configuration: boto3 finds them in the standard AWS environment
    variables, shared config files or the instance/task role.
    """

    backend: str = Field(default="local", description="'local' or 's3'.")
    local_root: str | None = Field(
        default=None, description="Root directory of the local backend (required for it)."
    )
    s3_bucket: str | None = Field(default=None, description="Bucket (required for s3).")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket.")
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server (MinIO, moto)."
    )
    s3_region: str | None = Field(default=None, description="Region of the bucket.")
    url_expiry_seconds: int = Field(
        default=7 * 24 * 3600, description="Lifetime of presigned URLs (at most 7 days)."
    )
    multipart_threshold_mb: int = Field(
        default=64, description="Files at least this big are uploaded in parts."
    )
    quota_bytes: int = Field(
        default=0, description="Most bytes the storage may hold (0: no quota), checked on publish."
    )
    create_bucket: bool = Field(
        default=False, description="Create the bucket if missing (development and tests)."
    )

    # Built on first use; Storage objects are thread-safe (boto3 clients are).
    _storage: Storage | None = PrivateAttr(default=None)

    def open(self) -> Storage:
        if self._storage is None:
            self._storage = self._build()
        return self._storage

    def _build(self) -> Storage:
        if self.backend == "local":
            if not self.local_root:
                raise ValueError("StorageResource: backend 'local' needs local_root")
            return LocalStorage(Path(self.local_root))
        if self.backend == "s3":
            if not self.s3_bucket:
                raise ValueError("StorageResource: backend 's3' needs s3_bucket")
            storage = S3Storage(
                make_s3_client(endpoint_url=self.s3_endpoint_url, region=self.s3_region),
                bucket=self.s3_bucket,
                prefix=self.s3_prefix,
                url_expiry_seconds=self.url_expiry_seconds,
                multipart_threshold=self.multipart_threshold_mb * MiB,
            )
            if self.create_bucket:
                storage.ensure_bucket()
            return storage
        raise ValueError(
            f"StorageResource: unknown backend {self.backend!r}; expected one of {BACKENDS}"
        )
