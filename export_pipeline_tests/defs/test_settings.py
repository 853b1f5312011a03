from pathlib import Path

from export_pipeline.defs.settings import Settings
from export_pipeline_tests import REPO_ROOT


def test_defaults_are_the_embedded_world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".data"
    assert settings.db_url == f"sqlite:///{tmp_path / '.data' / 'app.db'}"
    assert settings.storage_backend == "local"
    assert settings.local_storage_root == tmp_path / ".data" / "storage"
    assert settings.allow_http is False and settings.allow_private_hosts is False
    assert settings.max_retries == 3 and settings.retry_delay_s == 40
    assert settings.download_deadline_s == 600 and settings.min_download_kbps == 32
    assert (settings.ffmpeg_memory_mb, settings.ffmpeg_cpu_s) == (3072, 7200)
    assert settings.min_download_grace_s == 10
    assert settings.max_request_bytes == 8192 * 1024**2


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
    assert settings.db_url.startswith("postgresql")
    assert settings.storage_backend == "s3" and settings.s3_bucket == "videos"
    assert settings.s3_region == "eu-west-1"
    assert settings.allowed_hosts == ("replicate.delivery", "cdn.example.com")
    assert settings.allow_http is True
    assert settings.max_clip_bytes == 100 * 1024**2
    assert settings.download_deadline_s == 120 and settings.min_download_kbps == 64
    assert (settings.ffmpeg_memory_mb, settings.ffmpeg_cpu_s) == (2048, 900)
    assert settings.min_download_grace_s == 5
    assert settings.max_request_bytes == 500 * 1024**2


def test_every_environment_variable_the_code_reads_is_in_the_readme_table():
    """Operators configure from README's one table: a variable the code reads and the table
    lacks is a setting nobody can find."""
    import re

    root = REPO_ROOT
    names = set()
    for path in (root / "export_pipeline").rglob("*.py"):
        names |= set(re.findall(r'"((?:EXPORT|SENTRY)_[A-Z0-9_]+)"', path.read_text()))
    readme = (root / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start : readme.index("\n## ", start + 1)]
    assert len(names) > 40  # the pattern still finds what the code reads
    assert sorted(n for n in names if f"`{n}`" not in table) == []
