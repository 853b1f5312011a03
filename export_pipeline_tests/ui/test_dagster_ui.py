"""The Dagster UI as an operator sees it, in headless Chromium (Debian's, driven by
Playwright; no browser download): after an export, the three assets, the partition and its
materialization with the video URL and duration are there. Saves screenshots as artifacts
under export_pipeline_tests/artifacts/."""

import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import DagsterInstance

from export_pipeline_tests.conftest import clip
from export_pipeline_tests.daemon import REPO, wait_for
from export_pipeline_tests.e2e.test_pipeline import export
from export_pipeline_tests.processes import Service

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path, settings):
    """A Dagster instance on disk and `dagster-webserver` reading it, on loopback."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = {
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "EXPORT_PIPELINE_HOME": str(settings.home),
    }
    # In a session of its own, stopped with its code server (`processes.Service`).
    server = Service(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=REPO, log=tmp_path / "webserver.log",
    ).start()  # fmt: skip

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 120, "dagster-webserver to answer")
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def dismiss_welcome(page) -> None:
    """The UI greets a new browser with a newsletter dialog; an operator would skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # no dialog this time
        pass


def test_operator_finds_the_export_in_the_dagster_ui(webserver, browser, settings, store, cdn):
    instance, base = webserver
    request_id, result, _ = export(
        settings, store, instance, [clip(cdn.url("landscape.mp4"), 1, duration=1.5)]
    )
    assert result.success
    row = store.get(request_id)
    key = f"exp-{request_id}"
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    page.goto(f"{base}/assets")
    for name in ("downloaded_clips", "encoded_video", "published_video"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dagster-ui-assets.png"))

    page.goto(f"{base}/assets/published_video?view=partitions&partition={key}")
    page.get_by_text(key).first.wait_for(timeout=60_000)
    page.get_by_text("duration_s").first.wait_for(timeout=60_000)
    page.get_by_text(row["video_url"]).first.wait_for(timeout=60_000)
    dismiss_welcome(page)
    page.screenshot(path=str(ARTIFACTS / "dagster-ui-published-video.png"), full_page=True)
    body = page.inner_text("body")
    assert key in body and "duration_s" in body and row["video_url"] in body
