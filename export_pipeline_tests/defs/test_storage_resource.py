# No `from __future__ import annotations` here: Dagster 1.13 reads asset annotations as
# objects and rejects string ones (`context: AssetExecutionContext` fails).

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from dagster import AssetExecutionContext, EnvVar, asset, materialize

from export_pipeline.defs.resources import StorageResource
from export_pipeline.io.storage import LocalStorage, S3Storage
from export_pipeline_tests.s3_server import S3Server

MiB = 1024 * 1024


def test_local_backend(tmp_path: Path) -> None:
    resource = StorageResource(backend="local", local_root=str(tmp_path / "storage"))

    storage = resource.open()

    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / "storage"
    assert resource.open() is storage  # built once per resource
    storage.put_bytes("a", b"x")
    assert (tmp_path / "storage" / "a").read_bytes() == b"x"


def test_local_is_the_default_backend(tmp_path: Path) -> None:
    assert isinstance(StorageResource(local_root=str(tmp_path)).open(), LocalStorage)


def test_s3_backend(s3_server: S3Server, s3_env: None) -> None:
    """Credentials come from the AWS environment variables (set by `s3_env`)."""
    resource = StorageResource(
        backend="s3",
        s3_bucket="resource-test-bucket",
        s3_prefix="exports",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1",
        url_expiry_seconds=600,
        multipart_threshold_mb=5,
        create_bucket=True,
    )

    storage = resource.open()

    assert isinstance(storage, S3Storage)
    assert resource.open() is storage
    assert storage.describe == "s3://resource-test-bucket/exports/"
    assert storage.transfer_config.multipart_threshold == 5 * MiB
    storage.put_bytes("videos/exp-42.mp4", b"video")
    url = storage.url("videos/exp-42.mp4")
    assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == ["600"]
    assert httpx.get(url).content == b"video"
    keys = storage.client.list_objects_v2(Bucket="resource-test-bucket")["Contents"]
    assert [item["Key"] for item in keys] == ["exports/videos/exp-42.mp4"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"backend": "gcs"}, "unknown backend 'gcs'; expected one of ('local', 's3')"),
        ({"backend": "S3", "s3_bucket": "b"}, "unknown backend 'S3'"),
        ({"backend": "local"}, "backend 'local' needs local_root"),
        ({"backend": "s3"}, "backend 's3' needs s3_bucket"),
        (
            {"backend": "s3", "s3_bucket": "b", "url_expiry_seconds": 30 * 24 * 3600},
            "url_expiry_seconds must be between 1 and 604800",
        ),
    ],
)
def test_bad_configuration(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StorageResource(**config).open()


def test_in_a_dagster_run_configured_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_STORAGE_ROOT", str(tmp_path / "storage"))

    @asset
    def manifest(context: AssetExecutionContext, storage: StorageResource) -> None:
        store = storage.open()
        store.put_json(f"work/{context.run_id}/clips.json", {"clips": 3})
        context.log.info(f"wrote to {store.describe}")

    result = materialize(
        [manifest],
        resources={"storage": StorageResource(local_root=EnvVar("TEST_STORAGE_ROOT"))},
    )

    assert result.success
    storage = LocalStorage(tmp_path / "storage")
    assert storage.get_json(f"work/{result.run_id}/clips.json") == {"clips": 3}
