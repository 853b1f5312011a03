"""A production-shaped world for end-to-end tests: the real `dagster-daemon` (sensors, run
queue, run monitoring, run retries) on a PostgreSQL-backed instance, the app database in
PostgreSQL, rows inserted with `export-pipeline request`, runs launched as subprocesses by
Dagster's default run launcher. Storage is S3 (moto) or local, as the test chooses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, RunsFilter

from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.processes import Proc, Service

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.5):
    """Poll `condition` until it returns something truthy; fail with `what` after a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def instance_config(dagster_url: str | None, overrides: dict | None = None) -> dict:
    """The repo's dagster.yaml (queue limits, run monitoring, run retries) with PostgreSQL
    storage instead of SQLite (`dagster_url` None: SQLite in DAGSTER_HOME, the default)."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for embedded in ("storage", "local_artifact_storage", "compute_logs"):
        config.pop(embedded, None)
    if dagster_url is not None:
        config["storage"] = {"postgres": {"postgres_url": dagster_url}}
    for key, value in (overrides or {}).items():
        config[key] = value
    return config


class DaemonWorld:
    def __init__(self, root: Path, dagster_url: str | None, app_url: str, env: dict[str, str],
                 config_overrides: dict | None = None):  # fmt: skip
        self.root = root
        self.home = root / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        url = dagster_url and dagster_url.replace("postgresql+psycopg2://", "postgresql://")
        (self.home / "dagster.yaml").write_text(
            yaml.safe_dump(instance_config(url, config_overrides))
        )
        self.work_dir = root / "work"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DAGSTER_"))},
            "DAGSTER_HOME": str(self.home),
            "EXPORT_DB_URL": app_url,
            "EXPORT_PIPELINE_HOME": str(root / "home"),
            "EXPORT_ALLOW_HTTP": "true",  # the stand-in CDN is plain HTTP on loopback
            "EXPORT_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
            "EXPORT_RETRY_DELAY_S": "0.5",
            "EXPORT_MAX_RETRIES": "1",
            "EXPORT_WORK_DIR": str(self.work_dir),
            "EXPORT_SENSOR_INTERVAL_S": "1",
            **env,
        }
        self.store = RequestStore.from_url(app_url)
        self.store.create_schema()
        self.log_path = root / "daemon.log"
        self.service: Service | None = None

    def start(self, code: Path = REPO) -> DaemonWorld:
        """`code`: the checkout whose code location the daemon loads (another one: a
        benchmark measuring an earlier commit)."""
        env = self.env if code == REPO else {**self.env, "PYTHONPATH": str(code)}
        self.service = Service(
            [str(BIN / "dagster-daemon"), "run", "-w", str(code / "workspace.yaml")],
            env=env,
            cwd=code,
            log=self.log_path,
        ).start()
        return self

    def stop(self) -> list[Proc]:
        """Stop the daemon and everything it started (code servers, run workers, FFmpeg),
        and return only once all of it is gone: a test drops the databases next, and a code
        server still waiting for its runs then never ends (see `processes`). Returns the
        processes that had to be killed after the grace period."""
        return self.service.stop() if self.service else []

    def crash_and_restart(self) -> None:
        """What a host crash or a forced redeploy does: SIGKILL to the daemon, its code server
        and the run workers they launched, all at once, then a fresh daemon."""
        self.service.kill()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:]

    def request(self, user: str, *clips: str, project: str | None = None) -> int:
        done = subprocess.run(
            [str(BIN / "export-pipeline"), "request", "--project-id", project or f"{user}-project",
             "--user-id", user, "--resolution", "720p", "--quality", "low",
             *[arg for url in clips for arg in ("--clip", url)]],
            env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(done.stdout.strip())

    def wait_rows(self, ids: list[int], done: Callable[[dict], bool], timeout_s: float, what: str):
        def check():
            rows = [self.store.get(i) for i in ids]
            return rows if all(done(r) for r in rows) else None

        try:
            return wait_for(check, timeout_s, what)
        except AssertionError as exc:
            rows = [(r["id"], r["status"], r["error_message"]) for r in map(self.store.get, ids)]
            raise AssertionError(f"{exc}\nrows: {rows}\ndaemon log:\n{self.log_tail()}") from None

    def runs_for(self, request_id: int):
        with DagsterInstance.from_config(str(self.home)) as instance:
            return instance.get_run_records(
                # by partition: runs the sensor did not launch (backfills, the UI) count too
                RunsFilter(tags={"dagster/partition": f"exp-{request_id}"}),
                ascending=True,
            )

    def all_runs(self):
        with DagsterInstance.from_config(str(self.home)) as instance:
            return instance.get_run_records(RunsFilter(job_name="export_video_job"))

    def finished_runs(self, request_id: int | None = None, timeout_s: float = 60):
        """The runs (of one request, or all) once each has ended. The row turns complete inside
        the last step, a moment before Dagster records the run's own end."""

        def check():
            runs = self.all_runs() if request_id is None else self.runs_for(request_id)
            return all(r.dagster_run.is_finished for r in runs) and runs

        return wait_for(check, timeout_s, "the runs to end")
