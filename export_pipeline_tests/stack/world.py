"""The production stack of docker/, run for real: stand-in base images where they cannot be
pulled, the two images, `docker-compose up`, and the helpers the stack test drives it with
(the app's SQL through the stack's PostgreSQL, containers by service or label, health).

Everything runs on this machine: the stack's own bridge network, and loopback for the ports
compose publishes (the webserver's 3000). Nothing here sleeps for a fixed time except where
a fault is a duration (the S3 server stopped for 30 s)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export_pipeline_tests.daemon import wait_for

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
PROJECT = "export-pipeline"
NETWORK = "export-pipeline"
# Containers the test starts itself (the CDN, the webhook receiver, probes).
TEST_LABEL = "export-pipeline-stack-test"
# Run and step containers (docker/dagster.yaml and executor-docker.yaml label them).
RUN_LABEL = "app=export-pipeline"
USER_CODE_IMAGE = "export-pipeline-user-code:local"
LONG_SERVICES = ("postgres", "minio", "user_code", "webserver", "daemon")


def docker_unavailable() -> str | None:
    """Why Docker cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI (.ci/run installs docker.io and starts dockerd)"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        return f"no Docker engine answers: {probe.stderr.strip()[:200]}"
    if compose_command() is None:
        return "neither docker-compose nor `docker compose` is installed"
    return None


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return ["docker", "compose"] if probe.returncode == 0 else None


def run(argv: list[str], *, check: bool = True, timeout: float = 1800, env=None,
        input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                            input=input)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:6])} ... exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout.strip()


@dataclass
class Stack:
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    _ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env_file = self.workdir / "stack.env"
        self.compose_argv = [*(compose_command() or []), "-f", str(COMPOSE_FILE), "-p", PROJECT,
                             "--env-file", str(self.env_file)]  # fmt: skip
        example = {}
        for line in (DOCKER_DIR / ".env.example").read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                example[name] = value
        self.values = {k: (secrets.token_hex(16) if v == "change-me" else v)
                       for k, v in example.items()}  # fmt: skip
        self.values["DOCKER_GID"] = str(os.stat("/var/run/docker.sock").st_gid)
        if self.env_file.exists():  # the same stack again (its volumes hold the passwords)
            for line in self.env_file.read_text().splitlines():
                name, _, value = line.partition("=")
                self.values[name] = value
        self.values.update(self.settings)
        self.write_env()

    # ---- configuration ------------------------------------------------------------------

    def write_env(self, **changes: str) -> None:
        self.values.update(changes)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    def compose_env(self) -> dict[str, str]:
        # Classic builder (no BuildKit here); compose's own builds through docker-py.
        return {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

    def compose(self, *args: str, check: bool = True, timeout: float = 1800) -> str:
        return run([*self.compose_argv, *args], check=check, timeout=timeout,
                   env=self.compose_env()).stdout.strip()  # fmt: skip

    # ---- images ---------------------------------------------------------------------------

    def build(self) -> None:
        started = time.monotonic()
        run(["sh", str(DOCKER_DIR / "stand-ins" / "build.sh")], timeout=1800,
            env=self.compose_env())  # fmt: skip
        self.timings["stand_ins_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        # db-init and user_code share one image: build it once, then the Dagster image.
        self.compose("build", "user_code", "webserver")
        self.timings["build_s"] = round(time.monotonic() - started, 1)
        sizes = {}
        for image in (USER_CODE_IMAGE, "export-pipeline-dagster:local"):
            sizes[image] = int(docker("image", "inspect", "-f", "{{.Size}}", image))
        self.timings["image_bytes"] = sizes

    # ---- the stack ----------------------------------------------------------------------

    def container(self, service: str) -> str:
        """The service's container id (kept until the next `up`, which may recreate it;
        a restart, kill or start keeps the id)."""
        if service not in self._ids:
            cid = self.compose("ps", "-q", service)
            assert cid, f"no container for {service}"
            self._ids[service] = cid.splitlines()[0]
        return self._ids[service]

    def health(self, service: str) -> str:
        return docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}"
                      "{{else}}{{.State.Status}}{{end}}", self.container(service), check=False)  # fmt: skip

    def all_healthy(self) -> bool:
        return all(self.health(s) == "healthy" for s in LONG_SERVICES)

    def up(self, *services: str, timeout_s: float = 600) -> float:
        """`up -d`, then wait until every long-running service is healthy; the seconds."""
        started = time.monotonic()
        self._ids.clear()
        self.compose("up", "-d", "--no-build", *services, timeout=timeout_s)
        wait_for(self.all_healthy, timeout_s, "every service of the stack to be healthy", 1)
        return round(time.monotonic() - started, 1)

    def subnet(self) -> str:
        return docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", NETWORK)

    def exit_code(self, service: str) -> int:
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.container(service)))

    # ---- the app's side: SQL on the stack's PostgreSQL -----------------------------------

    def sql(self, statement: str, *, as_app: bool = True) -> str:
        """One statement through psql in the postgres container: as the app's role over
        TCP with its password (what the app does), or as the superuser."""
        if as_app:
            argv = ["docker", "exec", "-e", f"PGPASSWORD={self.values['EXPORT_DB_PASSWORD']}",
                    self.container("postgres"), "psql", "-h", "127.0.0.1", "-U",
                    self.values["EXPORT_DB_USER"], "-d", self.values["EXPORT_DB_NAME"]]  # fmt: skip
        else:
            argv = ["docker", "exec", self.container("postgres"), "psql", "-U", "postgres",
                    "-d", self.values["DAGSTER_PG_DB"]]  # fmt: skip
        result = run([*argv, "-v", "ON_ERROR_STOP=1", "-At", "-c", statement], timeout=60)
        return result.stdout.strip()

    def insert(self, clips: list[dict], *, user: str = "stack-user", resolution: str = "1080p",
               quality: str = "high") -> int:  # fmt: skip
        clips_json = json.dumps(clips).replace("'", "''")
        out = self.sql(
            "INSERT INTO export_requests (project_id, user_id, resolution, aspect_ratio, "
            f"quality, clips) VALUES ('stack-project', '{user}', '{resolution}', '16:9', "
            f"'{quality}', '{clips_json}') RETURNING id"
        )
        return int(out.splitlines()[0])

    def row(self, request_id: int) -> dict[str, Any]:
        out = self.sql(f"SELECT row_to_json(r) FROM export_requests r WHERE id = {request_id}")
        return json.loads(out)

    def wait_row(self, request_id: int, predicate: Callable[[dict], bool], timeout_s: float,
                 what: str, poll_s: float = 0.5) -> dict:  # fmt: skip
        def check():
            try:
                row = self.row(request_id)
            except AssertionError:  # PostgreSQL restarting
                return None
            return row if predicate(row) else None

        return wait_for(check, timeout_s, f"request {request_id}: {what}", poll_s)

    def wait_finished(self, request_id: int, timeout_s: float = 600) -> dict:
        return self.wait_row(
            request_id,
            lambda r: r["status"] in ("complete", "failed", "canceled", "rejected"),
            timeout_s,
            "a finished status",
        )

    def run_container(self, run_id: str) -> str | None:
        out = docker("ps", "-aq", "--filter", f"label=dagster/run_id={run_id}")
        return out.splitlines()[0] if out else None

    def inspect(self, container: str) -> dict:
        return json.loads(docker("inspect", container))[0]

    def env_of(self, container: str) -> dict[str, str]:
        env = self.inspect(container)["Config"]["Env"]
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)

    def events(self, run_id: str, event_type: str) -> list[tuple[str, float]]:
        """(step_key, Unix time) of a run's events of one type, from Dagster's event log."""
        out = self.sql(
            "SELECT coalesce(step_key, ''), extract(epoch from timestamp) FROM event_logs "
            f"WHERE run_id = '{run_id}' AND dagster_event_type = '{event_type}' ORDER BY id",
            as_app=False,
        )
        rows = []
        for line in out.splitlines():
            key, _, ts = line.rpartition("|")
            rows.append((key, float(ts)))
        return rows

    # ---- helper containers on the stack's network --------------------------------------

    def side_container(self, name: str, alias: str, volume: Path, command: list[str],
                       env: dict[str, str] | None = None) -> str:  # fmt: skip
        argv = ["run", "-d", "--name", name, "--network", NETWORK, "--network-alias", alias,
                "--label", TEST_LABEL, "-v", f"{volume}:/srv"]  # fmt: skip
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        return docker(*argv, USER_CODE_IMAGE, *command)

    def probe(self, *command: str, timeout: float = 120) -> str:
        """A one-shot container of the user-code image on the stack's network."""
        return docker("run", "--rm", "--network", NETWORK, "--label", TEST_LABEL,
                      USER_CODE_IMAGE, *command, timeout=timeout)  # fmt: skip

    # ---- the end --------------------------------------------------------------------------

    def leftovers(self) -> dict[str, list[str]]:
        return {
            "containers": docker("ps", "-aq", "--filter", f"label={TEST_LABEL}").split()
            + docker("ps", "-aq", "--filter", f"label={RUN_LABEL}").split()
            + docker(
                "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
            ).split(),
            "networks": docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$").split(),
            "volumes": [
                v
                for v in docker("volume", "ls", "-q").split()
                if v.startswith((PROJECT, PROJECT.replace("-", "")))
            ],  # fmt: skip
        }

    def down(self) -> dict[str, list[str]]:
        """Remove every container, network and volume of the stack and of the test."""
        for label in (TEST_LABEL, RUN_LABEL):
            ids = docker("ps", "-aq", "--filter", f"label={label}").split()
            if ids:
                docker("rm", "-f", *ids, check=False)
        self.compose("down", "-v", "--remove-orphans", "-t", "20", check=False, timeout=300)
        self._ids.clear()
        left = self.leftovers()
        if left["volumes"]:
            docker("volume", "rm", "-f", *left["volumes"], check=False)
        return self.leftovers()
