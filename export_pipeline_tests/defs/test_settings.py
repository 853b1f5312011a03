import re
from pathlib import Path

from export_pipeline.defs.settings import Settings, declared
from export_pipeline_tests import REPO_ROOT


def test_defaults_are_the_embedded_world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".data"
    assert settings.app_db.url == f"sqlite:///{tmp_path / '.data' / 'app.db'}"
    assert settings.storage.backend == "local"
    assert Path(settings.storage.local_root) == tmp_path / ".data" / "storage"
    assert (
        settings.downloads.allow_http is False and settings.downloads.allow_private_hosts is False
    )
    assert settings.runs.max_retries == 3 and settings.runs.retry_delay_s == 40
    assert settings.downloads.deadline_s == 600 and settings.downloads.min_kbps == 32
    assert (settings.media.memory_mb, settings.media.cpu_s) == (3072, 7200)
    assert settings.downloads.min_kbps_grace_s == 10
    assert int(settings.downloads.max_request_mb * 1024**2) == 8192 * 1024**2


def test_environment_selects_production():
    settings = Settings.from_env(
        {
            "EXPORT_PIPELINE_HOME": "/srv/export",
            "EXPORT_DB_URL": "postgresql+psycopg2://export@db/app",
            "EXPORT_STORAGE_BACKEND": "S3",
            "EXPORT_S3_BUCKET": "videos",
            "EXPORT_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_REGION": "eu-west-1",
            "EXPORT_ALLOWED_HOSTS": "replicate.delivery, CDN.example.com",
            "EXPORT_ALLOW_HTTP": "yes",
            "EXPORT_MAX_CLIP_MB": "100",
            "EXPORT_DOWNLOAD_DEADLINE_S": "120",
            "EXPORT_FFMPEG_MEMORY_MB": "2048",
            "EXPORT_FFMPEG_CPU_S": "900",
            "EXPORT_MIN_DOWNLOAD_KBPS": "64",
            "EXPORT_MIN_DOWNLOAD_GRACE_S": "5",
            "EXPORT_MAX_REQUEST_MB": "500",
        }
    )
    assert settings.home == Path("/srv/export")
    assert settings.app_db.url.startswith("postgresql")
    assert settings.storage.backend == "s3" and settings.storage.s3_bucket == "videos"
    assert settings.storage.s3_region == "eu-west-1"
    assert settings.downloads.allowed_hosts == ["replicate.delivery", "cdn.example.com"]
    assert settings.downloads.allow_http is True
    assert int(settings.downloads.max_clip_mb * 1024**2) == 100 * 1024**2
    assert settings.downloads.deadline_s == 120 and settings.downloads.min_kbps == 64
    assert (settings.media.memory_mb, settings.media.cpu_s) == (2048, 900)
    assert settings.downloads.min_kbps_grace_s == 5
    assert int(settings.downloads.max_request_mb * 1024**2) == 500 * 1024**2


def readme_table() -> dict[str, str]:
    """README's configuration table: {variable: its row}."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start : readme.index("\n## ", start + 1)]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", first):
                rows[name] = line
    return rows


def test_the_readme_table_is_the_settings_declared_in_the_code():
    """Operators configure from README's one table; it lists exactly what the code declares
    (defs.config.setting), and each row shows the declared default."""
    table = readme_table()
    declared_names = {d.env for d in declared()}
    documented = {n for n in table if n.startswith(("EXPORT_", "SENTRY_"))}
    assert sorted(declared_names - set(table)) == []  # declared but not documented
    assert sorted(documented - declared_names - {"EXPORT_TEST_POSTGRES_URL"}) == []
    for item in declared():
        if isinstance(item.default, int | float) and not isinstance(item.default, bool):
            shown = str(item.default) if isinstance(item.default, int) else f"{item.default:g}"
            assert f"`{shown}`" in table[item.env], (item.env, item.default)


def test_nothing_else_reads_a_setting_from_the_environment():
    """Each setting is stated once: only defs.config reads the variables settings declare."""
    reads = re.compile(r"""(?:environ|getenv|env)(?:\.get)?[\[(]\s*["'](?:EXPORT|SENTRY)_""")
    package = REPO_ROOT / "export_pipeline"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if reads.search(path.read_text())
    )
    assert readers == []


def test_every_setting_is_declared_once():
    names = [d.env for d in declared()]
    assert len(names) == len(set(names)) and len(names) >= 70
    assert all(d.doc for d in declared())


def test_settings_groups_refuse_unknown_names_and_bad_values(tmp_path):
    import pytest

    settings = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path)})
    with pytest.raises(TypeError, match="no setting"):
        settings.replace(downloads={"allow_htp": True})
    with pytest.raises(ValueError, match="EXPORT_MAX_RETRIES='three' is not a valid int"):
        Settings.from_env({"EXPORT_MAX_RETRIES": "three"})
    with pytest.raises(ValueError, match="EXPORT_ALLOW_HTTP='maybe' is not a valid bool"):
        Settings.from_env({"EXPORT_ALLOW_HTTP": "maybe"})
    auto = Settings.from_env({"EXPORT_SEGMENTS_PER_STEP": "auto", "EXPORT_EXECUTOR": "docker"})
    assert auto.resources()["media"].segments_per_step == 1
    assert auto.replace(runs={"executor": "in_process"}).resources()["media"].segments_per_step == 0
    forced = Settings.from_env({"EXPORT_SEGMENTS_PER_STEP": "4"})
    assert forced.resources()["media"].segments_per_step == 4


def test_a_refused_clip_url_names_the_setting_that_allows_it(tmp_path):
    """The quick start's first clip of one's own is served on loopback over plain HTTP:
    the refusal says which settings allow it for local testing."""
    import pytest

    from export_pipeline.domain.failures import ExportFailure
    from export_pipeline.io.http import check_url

    policy = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path)}).downloads.policy()
    with pytest.raises(ExportFailure, match=r"only https\); .*EXPORT_ALLOW_HTTP=true"):
        check_url("http://127.0.0.1:8000/clip.mp4", policy)
    with pytest.raises(ExportFailure, match="EXPORT_ALLOWED_PRIVATE_NETWORKS .*127.0.0.0/8"):
        check_url("https://127.0.0.1:8000/clip.mp4", policy)
    allowed = Settings.from_env(
        {"EXPORT_ALLOW_HTTP": "true", "EXPORT_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8"}
    ).downloads.policy()
    assert check_url("http://127.0.0.1:8000/clip.mp4", allowed) == ["127.0.0.1"]
