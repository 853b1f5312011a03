"""The resources of `defs/resources.py`: where scratch space goes and what is left of an
earlier attempt, the download policy the settings make, and which storage backend is built
(and what a wrong configuration says)."""

# No `from __future__ import annotations` here: Dagster 1.13 reads asset annotations as
# objects and rejects string ones (`context: AssetExecutionContext` fails).

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from dagster import AssetExecutionContext, EnvVar, asset, materialize

from export_pipeline.defs.resources import AppDatabase, ClipDownloads, MediaTools, StorageResource
from export_pipeline.io.appdb.store import RequestStore
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
        ({"backend": "azure", "s3_bucket": "b"}, "unknown backend 'azure'"),
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


# ---- MediaTools: scratch space


def test_a_steps_scratch_directory_clears_only_its_own_leftovers(tmp_path: Path) -> None:
    """A killed attempt of this step left its directory behind: the next one removes it.
    Another step's or another export's directory, even one whose name starts alike, stays."""
    work = tmp_path / "work"
    media = MediaTools(work_dir=str(work))
    own = work / "export-exp-1-plan-oldattempt"
    others = [work / name for name in ("export-exp-1-planning-x", "export-exp-10-plan-x",
                                       "export-exp-1-segment-0-x", "export-exp-1-plan")]  # fmt: skip
    for directory in [own, *others]:
        directory.mkdir(parents=True)
        (directory / "partial.mp4").write_bytes(b"x")

    with media.temp_dir("export-exp-1-plan") as scratch:
        assert Path(scratch).parent == work and Path(scratch).name.startswith("export-exp-1-plan-")
        assert not own.exists()
        assert all((d / "partial.mp4").exists() for d in others)
    assert not Path(scratch).exists()  # removed when the step ends


def test_scratch_goes_to_the_system_temporary_directory_without_settings() -> None:
    with MediaTools().temp_dir("export-exp-1-test") as scratch:
        assert Path(scratch).parent == Path(tempfile.gettempdir())


def test_two_deployments_on_one_machine_keep_their_scratch_apart(tmp_path: Path) -> None:
    """Each deployment numbers its requests from 1, so both have an `exp-1`. A step clears
    leftovers of its own earlier attempts by name: in a shared directory it would delete the
    other deployment's live files (seen: two benchmarks at once, segments failing and
    retried at safer settings). By default each home has its own scratch directory."""
    from export_pipeline.defs.settings import Settings

    first, second = (
        Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path / name)}).media
        for name in ("staging", "production")
    )
    assert first.work_dir == str((tmp_path / "staging" / "scratch").absolute())
    with first.temp_dir("export-exp-1-clips") as working:
        (Path(working) / "clip-0001.download").write_bytes(b"half a clip")
        with second.temp_dir("export-exp-1-clips"):
            assert (Path(working) / "clip-0001.download").exists()
    chosen = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path), "EXPORT_WORK_DIR": "/w"})
    assert chosen.media.work_dir == "/w"


# ---- ClipDownloads: the download policy


def test_the_download_policy_is_the_resources_settings() -> None:
    downloads = ClipDownloads(
        max_clip_mb=2, connect_timeout_s=1.5, read_timeout_s=2.5, deadline_s=30,
        min_kbps=64, min_kbps_grace_s=3, allow_http=True,
        allowed_hosts=["CDN.Example.com", "replicate.delivery"], private_networks=["10.0.0.0/8"],
    )  # fmt: skip
    policy = downloads.policy()
    assert (policy.max_bytes, policy.connect_timeout_s, policy.read_timeout_s) == (
        2 * 1024**2,
        1.5,
        2.5,
    )
    assert (policy.deadline_s, policy.min_kbps, policy.min_kbps_grace_s) == (30, 64, 3)
    assert policy.allow_http and not policy.allow_private_hosts
    assert policy.allowed_hosts == ("cdn.example.com", "replicate.delivery")  # host names: any case
    assert policy.address_allowed("10.1.2.3") and policy.address_allowed("93.184.216.34")
    assert not policy.address_allowed("192.168.1.1")
    assert not policy.address_allowed("169.254.169.254")  # cloud metadata


def test_the_default_download_policy_is_the_safe_one() -> None:
    policy = ClipDownloads().policy()
    assert not policy.allow_http and not policy.allow_private_hosts
    assert policy.allowed_hosts == () and policy.private_networks == ()
    assert not policy.address_allowed("127.0.0.1")


# ---- AppDatabase


def test_the_app_database_is_the_configured_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    store = AppDatabase(url=url).store()
    assert isinstance(store, RequestStore)
    store.create_schema()
    request_id = store.insert(project_id="p", user_id="u", resolution="720p", quality="low",
                              clips=[{"url": "https://cdn.example/a.mp4"}])  # fmt: skip
    assert AppDatabase(url=url).store().get(request_id)["project_id"] == "p"


def test_the_backend_is_read_whatever_its_case(tmp_path):
    """`EXPORT_STORAGE_BACKEND=S3` means s3, as it always did from the environment."""
    resource = StorageResource(backend=" S3 ", s3_bucket="b")
    assert resource.backend == "s3"
