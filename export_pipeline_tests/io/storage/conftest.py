"""Storage fixtures: a local root per test, and a fresh bucket per test on the session's
moto server (`s3_server`, `s3_client`, `s3_bucket` live in the top-level conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from export_pipeline.io.storage import LocalStorage, S3Storage, Storage

MiB = 1024 * 1024

# Small enough to exercise multipart uploads with test-sized files; S3's minimum part.
TEST_MULTIPART_BYTES = 5 * MiB


@pytest.fixture
def s3_storage(s3_client: Any, s3_bucket: str) -> S3Storage:
    # A key prefix, so every test also checks that keys come back relative to it.
    return S3Storage(
        s3_client,
        s3_bucket,
        prefix="exports",
        multipart_threshold=TEST_MULTIPART_BYTES,
        multipart_chunksize=TEST_MULTIPART_BYTES,
    )


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each contract test runs against both implementations."""
    return request.getfixturevalue(f"{request.param}_storage")
