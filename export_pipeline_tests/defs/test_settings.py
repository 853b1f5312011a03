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


def test_the_readme_table_is_the_settings_declared_in_the_code():
    """Operators configure from README's one table: generated from the settings as declared
    (`export-pipeline settings --markdown`), so it lists exactly those, with their defaults.
    The rows after it name only variables other programs read."""
    from export_pipeline.cli.operations import settings_table

    readme = (REPO_ROOT / "README.md").read_text()
    begin = readme.index("<!-- settings:begin")
    table = readme[readme.index("\n", begin) + 1 : readme.index("<!-- settings:end -->")]
    assert table.strip() == settings_table(), "run: export-pipeline settings --markdown"
    for item in declared():
        assert f"| `{item.env}`" in table
    section = readme[readme.index("## Configuration") : readme.index("\n## Architecture")]
    after = section[section.index("<!-- settings:end -->") :]
    others = set(re.findall(r"`((?:EXPORT|SENTRY)_[A-Z0-9_]+)`", after))
    assert others <= {"EXPORT_TEST_POSTGRES_URL", "EXPORT_DB_URL"}, others


def test_settings_prints_what_a_process_reads(tmp_path, capsys):
    """`export-pipeline settings`: every variable once, its value as read, secrets hidden."""
    from export_pipeline.cli.operations import settings_values

    settings = Settings.from_env(
        {
            "EXPORT_PIPELINE_HOME": str(tmp_path),
            "EXPORT_ALLOW_HTTP": "true",
            "EXPORT_ALLOWED_HOSTS": "a.example,b.example",
            "EXPORT_WEBHOOK_SECRET": "hush",
            "EXPORT_PAGERDUTY_ROUTING_KEY": "R0UT1NG",
        }
    )
    lines = dict(line.split("=", 1) for line in settings_values(settings).splitlines())
    assert list(lines) == [item.env for item in declared()]
    assert lines["EXPORT_ALLOW_HTTP"] == "true"
    assert lines["EXPORT_ALLOWED_HOSTS"] == "a.example,b.example"
    assert lines["EXPORT_DB_URL"] == f"sqlite:///{tmp_path / 'app.db'}"
    assert lines["EXPORT_WEBHOOK_SECRET"] == lines["EXPORT_PAGERDUTY_ROUTING_KEY"] == "(set)"
    assert lines["EXPORT_SLACK_BOT_TOKEN"] == ""  # a channel not configured
    assert "hush" not in settings_values(settings)


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
