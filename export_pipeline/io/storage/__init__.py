"""Object storage for everything steps pass to each other: local filesystem or S3."""

from export_pipeline.io.storage.base import ObjectNotFound, Storage, validate_key, validate_prefix
from export_pipeline.io.storage.local import LocalStorage
from export_pipeline.io.storage.s3 import S3Storage, make_s3_client

__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "make_s3_client",
    "validate_key",
    "validate_prefix",
]
