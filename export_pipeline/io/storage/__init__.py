"""Object storage for everything steps pass to each other: local filesystem or S3.

`S3Storage` and `make_s3_client` are imported on first use: boto3 takes ~0.1 s to import,
which every run worker paid before its first step even on local storage (issue 24)."""

from typing import Any

from export_pipeline.io.storage.base import ObjectNotFound, Storage, validate_key, validate_prefix
from export_pipeline.io.storage.local import LocalStorage


def __getattr__(name: str) -> Any:
    if name in ("S3Storage", "make_s3_client"):
        from export_pipeline.io.storage import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "make_s3_client",
    "validate_key",
    "validate_prefix",
]
