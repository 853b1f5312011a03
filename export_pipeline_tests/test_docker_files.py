"""Static checks of the Docker deployment in docker/.

No Docker engine runs on our machines or in CI, so the images are never built here. These
tests check what can be checked without one: that the files agree with each other and with
the repository (paths, service names, ports, variables, versions), that no secret is
committed, and that docker/dagster.yaml is a working Dagster instance: it is loaded for real
against the local PostgreSQL and an S3-compatible server on loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import make_url, text

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
DAGSTER_YAML = DOCKER / "dagster.yaml"
WORKSPACE_YAML = DOCKER / "workspace.yaml"
DOCKERFILES = {
    "user_code": DOCKER / "Dockerfile_user_code",
    "dagster": DOCKER / "Dockerfile_dagster",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET")
# `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$VAR`, but not `$$` (a literal `$`).
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
REQUIRED_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}$")


# ---- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    """The compose file as compose sees it after YAML anchors and merge keys."""
    return load_yaml(COMPOSE_FILE)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        assert name not in values, f".env.example sets {name} twice"
        values[name] = value
    return values


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_pins() -> dict[str, str]:
    """Exact `name==version` pins of pyproject's dependencies."""
    pins = {}
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined."""
    logical: list[str] = []
    current = ""
    for raw in dockerfile.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, f"{dockerfile.name} ends inside a continued instruction"
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for keyword, args in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in shlex.split(args)), "multi-stage COPY"
        assert len(words) >= 2, f"{dockerfile.name}: COPY {args}"
        sources.extend(words[:-1])
    return sources


def cmd_of(dockerfile: Path) -> list[str]:
    cmds = [args for keyword, args in instructions(dockerfile) if keyword == "CMD"]
    assert len(cmds) == 1, f"{dockerfile.name}: expected one CMD, got {cmds}"
    return json.loads(cmds[0])  # exec form only: signals reach the process


def option(argv: list[str], *names: str) -> str:
    for i, word in enumerate(argv):
        if word in names:
            return argv[i + 1]
    raise AssertionError(f"none of {names} in {argv}")


def env_references(node: Any) -> set[str]:
    """Names of environment variables a Dagster config reads with `{env: NAME}`."""
    found: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        for value in node.values():
            found |= env_references(value)
    elif isinstance(node, list):
        for value in node:
            found |= env_references(value)
    return found


def launcher_config() -> dict[str, Any]:
    launcher = load_yaml(DAGSTER_YAML)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    return launcher["config"]


# ---- docker-compose.yml ----------------------------------------------------------------


def test_compose_has_the_services_of_the_deployment():
    assert set(services()) == {
        "postgres",
        "minio",
        "minio-setup",
        "db-init",
        "user_code",
        "webserver",
        "daemon",
    }


def test_compose_builds_use_existing_dockerfiles():
    builds = {name: svc["build"] for name, svc in services().items() if "build" in svc}
    assert set(builds) == {"db-init", "user_code", "webserver", "daemon"}
    for name, build in builds.items():
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context should be the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
    assert builds["user_code"] == builds["db-init"], "db-init must run the user-code image"
    assert builds["webserver"] == builds["daemon"]


def test_compose_images_are_pinned():
    for name, svc in services().items():
        image = svc["image"]
        if "build" in svc:
            # Built here; the tag is the rollout knob of .env.example.
            assert image.endswith(":${EXPORT_IMAGE_TAG:-local}"), f"{name}: {image}"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image!r} is not pinned"


def test_compose_file_sources_exist():
    for name, svc in services().items():
        for env_file in svc.get("env_file", []) or []:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (DOCKER / path).exists(), f"{name}: env_file {path} does not exist"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith("."):
                path = (DOCKER / source).resolve()
                assert path.exists(), f"{name}: volume source {source} does not exist"
                assert ROOT in path.parents, f"{name}: {source} is outside the repository"
            elif source.startswith("/"):
                # The only host path: the Docker socket, for the run launcher.
                assert source == "/var/run/docker.sock", f"{name}: host path {source}"
            else:
                assert source in compose()["volumes"], f"{name}: undeclared volume {source}"


def test_compose_dependencies_exist_and_wait_for_the_right_condition():
    all_services = services()
    for name, svc in all_services.items():
        for dependency, spec in (svc.get("depends_on") or {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            target = all_services[dependency]
            condition = spec["condition"]
            if target.get("restart") == "no":
                # A one-shot: wait for it to finish, and to succeed.
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in target, f"{dependency} has no healthcheck"


def test_one_shots_run_what_they_should():
    svc = services()
    assert svc["db-init"]["command"] == ["export-pipeline", "db", "init"]
    script = "/setup/setup.sh"
    assert svc["minio-setup"]["entrypoint"] == ["/bin/sh", script]
    assert any(v.endswith(f":{script}:ro") for v in svc["minio-setup"]["volumes"])
    for name in ("db-init", "minio-setup"):
        assert svc[name]["restart"] == "no"


def test_every_compose_variable_is_in_env_example_and_nothing_else():
    used = {a or b for a, b in COMPOSE_VARIABLE.findall(COMPOSE_FILE.read_text())}
    # COMPOSE_PROJECT_NAME is compose's own (the project name, v1 and v2 alike).
    listed = set(env_example()) - {"COMPOSE_PROJECT_NAME"}
    assert used - listed == set(), "compose reads variables .env.example does not list"
    assert listed - used == set(), ".env.example lists variables compose never reads"


def test_env_example_has_placeholders_for_every_secret():
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value == "change-me", f".env.example: {name} should be change-me"


def test_no_literal_secret_in_compose():
    for name, svc in services().items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_REFERENCE.match(str(value)), (
                    f"{name}: {key} must be a required ${{VAR:?}} reference, not {value!r}"
                )
    for path in [COMPOSE_FILE, DAGSTER_YAML, *DOCKERFILES.values()]:
        lines = [
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ]
        assert "change-me" not in "\n".join(lines), f"{path.name} holds a placeholder value"


def test_app_database_url_carries_no_password():
    raw = services()["user_code"]["environment"]["EXPORT_DB_URL"]
    url = re.sub(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", r"\1", raw)  # ${VAR:-default} -> default
    assert "$" not in url, f"EXPORT_DB_URL uses a variable without a default: {raw}"
    assert make_url(url).password is None
    userinfo = url.split("://", 1)[1].split("@", 1)[0]
    assert ":" not in userinfo, f"EXPORT_DB_URL must not carry a password: {url}"
    assert REQUIRED_REFERENCE.match(services()["user_code"]["environment"]["PGPASSWORD"])


def test_the_real_env_file_is_git_ignored():
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        [git, "check-ignore", "-q", "docker/.env"], cwd=ROOT, capture_output=True
    )
    assert result.returncode == 0, "docker/.env (the secrets) is not git-ignored"


def test_compose_file_has_no_top_level_name():
    # docker-compose 1.29 (Debian's) refuses a top-level `name:`; the project's name is
    # COMPOSE_PROJECT_NAME in docker/.env, which v1 and v2 both read.
    assert "name" not in compose()
    assert env_example()["COMPOSE_PROJECT_NAME"] == "export-pipeline"


def test_docker_compose_v1_config_accepts_the_file(tmp_path):
    """Debian's docker-compose (1.29) is the compose that runs the stack test here."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose (1.x) is not installed")
    base = [tool, "-f", str(COMPOSE_FILE)]
    ok = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--quiet"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    partial = tmp_path / "partial.env"
    partial.write_text(
        "\n".join(f"{k}={v}" for k, v in env_example().items() if k != "POSTGRES_PASSWORD")
    )
    missing = subprocess.run(
        [*base, "--env-file", str(partial), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"},
    )
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(
            "the Docker Compose v2 plugin is absent (`docker compose version` fails); "
            "the compose file is checked by the YAML tests above instead"
        )
    base = [docker, "compose", "-f", str(COMPOSE_FILE)]
    ok = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    # And a missing secret stops it.
    partial = tmp_path / "partial.env"
    partial.write_text(
        "\n".join(f"{k}={v}" for k, v in env_example().items() if k != "POSTGRES_PASSWORD")
    )
    missing = subprocess.run(
        [*base, "--env-file", str(partial), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"},
    )
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr


# ---- Dockerfiles -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_copy_sources_exist(name):
    sources = copy_sources(DOCKERFILES[name])
    assert sources, f"{name}: no COPY"
    for source in sources:
        assert (ROOT / source).exists(), f"{name}: COPY source {source} does not exist"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerignore_lets_exactly_the_copied_files_through(name):
    dockerfile = DOCKERFILES[name]
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing, then allow what COPY needs"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    for source in copy_sources(dockerfile):
        assert source.rstrip("/") in allowed, f"{name}: COPY {source} is excluded by {ignore}"
    for secret in ("docker", "docker/.env", ".env"):
        assert secret not in allowed, f"{ignore.name} lets {secret} into the build context"


def dockerignore_patterns(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_root_dockerignore_is_the_union_for_the_classic_builder():
    """The classic builder (no BuildKit) reads only the context's own .dockerignore: it must
    let through what either Dockerfile copies, and nothing else."""
    root = dockerignore_patterns(ROOT / ".dockerignore")
    assert root[0] == "*"
    per_file: set[str] = set()
    for dockerfile in DOCKERFILES.values():
        per_file |= set(
            dockerignore_patterns(dockerfile.with_name(dockerfile.name + ".dockerignore"))
        )
    assert set(root) == per_file


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_base_image_is_pinned(name):
    froms = [args for keyword, args in instructions(DOCKERFILES[name]) if keyword == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image


def test_user_code_image_pins_ffmpeg_from_debian():
    runs = [args for keyword, args in instructions(DOCKERFILES["user_code"]) if keyword == "RUN"]
    installs = [r for r in runs if "apt-get install" in r]
    assert len(installs) == 1
    packages = re.findall(r"\bffmpeg(=[^\s\"']*)?", installs[0])
    assert packages == ["=7:5.1.*"], f"ffmpeg must be pinned to bookworm's 5.1: {installs[0]}"


def test_user_code_image_installs_dependencies_before_the_source():
    steps = instructions(DOCKERFILES["user_code"])

    def index(predicate) -> int:
        matches = [i for i, step in enumerate(steps) if predicate(*step)]
        assert len(matches) == 1, matches
        return matches[0]

    copy_manifest = index(lambda k, a: k == "COPY" and "docker/requirements.txt" in a)
    install_deps = index(lambda k, a: k == "RUN" and "pip install -r requirements.txt" in a)
    copy_pyproject = index(lambda k, a: k == "COPY" and "pyproject.toml" in a)
    copy_source = index(lambda k, a: k == "COPY" and a.split()[0] == "export_pipeline")
    install_project = index(lambda k, a: k == "RUN" and "pip install --no-deps ." in a)
    # pyproject.toml after the dependency layer: editing its tool settings (pytest, ruff)
    # keeps the installed dependencies cached.
    assert copy_manifest < install_deps < copy_pyproject < copy_source < install_project
    assert "-c constraints.txt" in steps[install_deps][1]
    # Nothing of the package reaches the image before its dependencies are installed.
    assert all("export_pipeline" not in a for k, a in steps[:install_deps] if k == "COPY")


def test_user_code_image_runs_the_code_server_and_no_entrypoint():
    steps = instructions(DOCKERFILES["user_code"])
    # The run launcher replaces CMD with `dagster api execute_run ...`: an ENTRYPOINT
    # would be prepended to it.
    assert not [a for k, a in steps if k == "ENTRYPOINT"]
    argv = cmd_of(DOCKERFILES["user_code"])
    assert argv[:3] == ["dagster", "code-server", "start"]
    assert option(argv, "-h", "--host") == "0.0.0.0"
    tool = pyproject()["tool"]["dagster"]
    assert option(argv, "-m", "--module-name") == tool["module_name"]
    module = importlib.import_module(option(argv, "-m", "--module-name"))
    from dagster import Definitions

    assert isinstance(getattr(module, option(argv, "-a", "--attribute")), Definitions)
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1] not in ("root", "0"), "runs handle user media: not as root"


def test_dagster_image_matches_pyproject_versions():
    steps = instructions(DOCKERFILES["dagster"])
    install = " ".join(a for k, a in steps if k == "RUN" and "pip install" in a)
    pins = {canonicalize_name(n): v for n, v in re.findall(r"([A-Za-z0-9_.-]+)==([\w.]+)", install)}
    project = pyproject_pins()
    for package in ("dagster", "dagster-webserver", "dagster-postgres", "dagster-aws"):
        assert pins.get(package) == project[package], f"{package}: image {pins.get(package)}"
    # Integration libraries share one release train.
    assert pins["dagster-docker"] == project["dagster-aws"]
    assert "sqlalchemy>=2.0,<2.1" in install  # dagster-postgres and SQLAlchemy 2.1
    assert "-c /tmp/constraints.txt" in install
    copied = [a for k, a in steps if k == "COPY" and "dagster.yaml" in a]
    assert copied == ["docker/dagster.yaml docker/workspace.yaml ./"]
    workdir = [a for k, a in steps if k == "WORKDIR"]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert workdir[-1] == "/opt/dagster/dagster_home"
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1] not in ("root", "0"), "the webserver and daemon run as non-root"
    # ... and reach the Docker socket through its group, as the code server does.
    for service in ("webserver", "daemon", "user_code"):
        assert services()[service]["group_add"] == ["${DOCKER_GID:?set it in docker/.env}"]


def test_dagster_docker_version_is_the_same_everywhere():
    # The user-code image takes it from pyproject's dependencies; the Dagster image pins it.
    dagster = " ".join(a for k, a in instructions(DOCKERFILES["dagster"]) if k == "RUN")
    constraints = (DOCKER / "constraints.txt").read_text()
    versions = {
        re.search(r"dagster-docker==([\w.]+)", text_).group(1) for text_ in (dagster, constraints)
    }
    versions.add(pyproject_pins()["dagster-docker"])
    assert versions == {pyproject_pins()["dagster-aws"]}


def test_image_requirements_are_pyprojects_dependencies():
    lines = [
        line.strip()
        for line in (DOCKER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == pyproject()["project"]["dependencies"], (
        "run `.venv/bin/python docker/update_constraints.py`"
    )


def test_constraints_pin_every_dependency_within_its_specifier():
    pinned = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: not name==version: {line!r}"
            pinned[canonicalize_name(name)] = version.strip()
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version}"


# ---- workspace.yaml ---------------------------------------------------------------------


def test_workspace_points_at_the_code_server():
    entries = load_yaml(WORKSPACE_YAML)["load_from"]
    assert len(entries) == 1
    server = entries[0]["grpc_server"]
    assert server["host"] in services(), f"{server['host']} is not a compose service"
    user_code = services()[server["host"]]
    assert user_code["build"]["dockerfile"] == "docker/Dockerfile_user_code"
    argv = cmd_of(DOCKERFILES["user_code"])
    assert int(option(argv, "-p", "--port")) == server["port"]
    assert str(server["port"]) in user_code["expose"]
    health = user_code["healthcheck"]["test"]
    assert "grpc-health-check" in health and option(health, "-p") == str(server["port"])
    assert server["location_name"] == pyproject()["tool"]["dagster"]["code_location_name"]


def test_dagster_services_load_the_copied_workspace():
    for name in ("webserver", "daemon"):
        command = services()[name]["command"]
        assert option(command, "-w", "--workspace") == "workspace.yaml"


# ---- dagster.yaml: against the compose file ------------------------------------------


def test_run_launcher_passes_the_run_environment_compose_defines():
    env_vars = launcher_config()["env_vars"]
    assert len(env_vars) == len(set(env_vars)), "a variable is listed twice"
    assert all("=" not in v for v in env_vars), "values belong in docker/.env, not here"
    names = set(env_vars)
    run_env = compose()["x-run-env"]
    assert names == set(run_env)
    svc = services()
    # The launcher copies the values from its own process: the daemon must set them all.
    assert names <= set(svc["daemon"]["environment"])
    # The code server imports the same definitions as the runs: the same settings.
    assert set(svc["user_code"]["environment"]) - {"DAGSTER_CURRENT_IMAGE"} == names
    from export_pipeline.defs.settings import environment_variables

    declared = set(environment_variables())
    for name in names:
        if name.startswith("EXPORT_"):
            assert name in declared, f"no setting reads {name}"


def test_every_process_loading_the_instance_has_its_variables():
    needed = env_references(load_yaml(DAGSTER_YAML))
    assert {"DAGSTER_PG_PASSWORD", "DAGSTER_COMPUTE_LOGS_BUCKET"} <= needed
    svc = services()
    for name in ("webserver", "daemon", "user_code"):
        assert needed <= set(svc[name]["environment"]), name
    assert needed <= set(launcher_config()["env_vars"])  # the run containers


def test_runs_launch_from_the_user_code_image_on_the_compose_network():
    svc = services()
    user_code = svc["user_code"]
    assert user_code["environment"]["DAGSTER_CURRENT_IMAGE"] == user_code["image"]
    assert svc["db-init"]["image"] == user_code["image"]
    networks = compose()["networks"]
    assert len(networks) == 1
    ((key, network),) = networks.items()
    assert launcher_config()["network"] == network["name"]
    for name, service in svc.items():
        assert service["networks"] == [key], name


def test_run_scratch_volume_is_the_work_dir():
    config = launcher_config()
    volumes = dict(config["container_kwargs"]["volumes"])
    # The run starts its steps' containers through the host's Docker socket.
    assert volumes.pop("/var/run/docker.sock") == {"bind": "/var/run/docker.sock", "mode": "rw"}
    ((volume, mount),) = volumes.items()
    declared = {v.get("name") for v in compose()["volumes"].values() if v}
    assert volume in declared, f"{volume} is not a named volume of the compose file"
    work_dir = compose()["x-run-env"]["EXPORT_WORK_DIR"]
    assert mount == {"bind": work_dir, "mode": "rw"}
    assert f"export-scratch:{work_dir}" in services()["user_code"]["volumes"]


def test_run_container_kwargs_are_accepted_by_docker_py():
    from docker.models.containers import _create_container_args

    kwargs = dict(launcher_config()["container_kwargs"])
    # DockerRunLauncher takes these two out before calling containers.create().
    stop_timeout = kwargs.pop("stop_timeout")
    assert isinstance(stop_timeout, int) and stop_timeout > 0
    labels = kwargs.pop("labels")
    args = _create_container_args(
        {
            **kwargs,
            "image": services()["user_code"]["image"],
            "command": ["dagster", "api", "execute_run", "{}"],
            "detach": True,
            "environment": {"A": "1"},
            "network": launcher_config()["network"],
            "labels": labels,
            "version": "1.44",
        }
    )
    host = args["host_config"]
    assert host["Init"] is True
    assert host["NanoCpus"] == 2 * 10**9
    assert host["Memory"] == 4 * 1024**3
    assert sorted(host["Binds"]) == sorted([
        f"export-pipeline-scratch:{compose()['x-run-env']['EXPORT_WORK_DIR']}:rw",
        "/var/run/docker.sock:/var/run/docker.sock:rw",
    ])  # fmt: skip


# ---- the step executors (EXPORT_EXECUTOR) -------------------------------------------------


def executor_config(name: str) -> dict[str, Any]:
    return load_yaml(DOCKER / f"executor-{name}.yaml")


def test_compose_runs_steps_with_the_docker_executor_config_in_the_image():
    run_env = compose()["x-run-env"]
    assert run_env["EXPORT_EXECUTOR"].startswith("${EXPORT_EXECUTOR:-docker}")
    path = run_env["EXPORT_EXECUTOR_CONFIG"]
    assert path == "/opt/dagster/app/docker/executor-docker.yaml"
    dockerfile = (DOCKER / "Dockerfile_user_code").read_text()
    assert "COPY docker/executor-docker.yaml docker/executor-k8s.yaml ./docker/" in dockerfile
    assert "WORKDIR /opt/dagster/app" in dockerfile


@pytest.mark.parametrize("name", ["docker", "k8s"])
def test_executor_configs_are_valid_for_their_executor(name):
    from dagster._config import validate_config

    if name == "docker":
        from dagster_docker import docker_executor as executor
    else:
        from dagster_k8s import k8s_job_executor as executor
    result = validate_config(executor.config_schema.config_type, executor_config(name))
    assert result.success, [e.message for e in result.errors]


def test_step_containers_get_the_run_environment():
    config = executor_config("docker")
    assert config["env_vars"] == launcher_config()["env_vars"]
    assert config["network"] == launcher_config()["network"]
    scratch = compose()["x-run-env"]["EXPORT_WORK_DIR"]
    assert config["container_kwargs"]["volumes"]["export-pipeline-scratch"]["bind"] == scratch


def test_k8s_segment_steps_get_their_own_resources():
    config = executor_config("k8s")
    from export_pipeline.definitions import defs

    ops = {node.name for node in defs.resolve_job_def("export_video_job").graph.nodes}
    nested = defs.resolve_job_def("export_video_job").graph.node_named("encoded_video")
    ops |= {node.name for node in nested.definition.nodes}
    for op_name, override in config["per_step_k8s_config"].items():
        assert op_name in ops, f"{op_name} is not an op of the export job"
        assert override["container_config"]["resources"]["requests"]["cpu"]
    segment = config["per_step_k8s_config"]["encoded_video_segment"]["container_config"]
    assert segment["resources"]["limits"]["cpu"] == "2"


# ---- dagster.yaml: loaded by Dagster -----------------------------------------------------


def instance_env(**overrides: str) -> dict[str, str]:
    return {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": "postgres",
        "DAGSTER_COMPUTE_LOGS_BUCKET": "logs",
        "DAGSTER_COMPUTE_LOGS_PREFIX": "dagster/compute-logs",
        "EXPORT_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "EXPORT_S3_REGION": "us-east-1",
        **overrides,
    }


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A DAGSTER_HOME holding docker/dagster.yaml (Dagster writes local files next to it)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    return home


def test_dagster_yaml_validates_against_the_instance_schema(dagster_home, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for name, value in instance_env().items():
        monkeypatch.setenv(name, value)
    config, custom_class = dagster_instance_config(str(dagster_home))
    assert custom_class is None
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    # The 1.13 form of the queue limits: in `concurrency`, not in the coordinator config.
    assert "max_concurrent_runs" not in config["run_coordinator"]["config"]
    assert "tag_concurrency_limits" not in config["run_coordinator"]["config"]
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": "export/user_id", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 1,
        "retry_on_asset_or_op_failure": False,
    }
    assert config["telemetry"] == {"enabled": False}
    assert config["freshness"] == {"enabled": False}
    assert config["nux"] == {"enabled": False}  # no "join the community" dialog, as at home
    home = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert home["nux"] == {"enabled": False}


def test_dagster_yaml_with_a_missing_secret_does_not_load(dagster_home, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.errors import DagsterInvalidConfigError

    for name, value in instance_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_PASSWORD"):
        DagsterInstance.from_config(str(dagster_home))


@pytest.fixture
def production_instance(
    dagster_home, new_postgres_db, s3_env, s3_server, s3_bucket, monkeypatch
) -> Iterator[Any]:
    """docker/dagster.yaml on a throwaway PostgreSQL database and the loopback S3 server."""
    from dagster import DagsterInstance

    url = make_url(new_postgres_db())
    env = instance_env(
        DAGSTER_PG_HOST=url.host or "127.0.0.1",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USER=url.username or "postgres",
        DAGSTER_PG_PASSWORD=url.password or "",
        DAGSTER_PG_DB=url.database or "",
        DAGSTER_COMPUTE_LOGS_BUCKET=s3_bucket,
        EXPORT_S3_ENDPOINT_URL=s3_server.endpoint_url,
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        yield instance


@pytest.mark.postgres
def test_dagster_yaml_loads_as_a_working_production_instance(production_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
    # The schema was created and the storage answers: a write and a read.
    instance.add_dynamic_partitions("export_requests", ["exp-1"])
    assert instance.get_dynamic_partitions("export_requests") == ["exp-1"]

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config  # what the daemon reads
    assert queue.max_concurrent_runs >= 1
    assert queue.tag_concurrency_limits == [
        {"key": "export/user_id", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert queue.max_user_code_failure_retries > 0

    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)

    launcher = instance.run_launcher
    assert isinstance(launcher, DockerRunLauncher)
    assert launcher.networks == ["export-pipeline"]
    assert launcher.image is None  # from the code location: DAGSTER_CURRENT_IMAGE

    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds >= 180
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert not instance.telemetry_enabled


@pytest.mark.postgres
def test_step_logs_reach_the_bucket(production_instance, s3_client, s3_bucket):
    from dagster._core.storage.compute_log_manager import ComputeIOType

    manager = production_instance.compute_log_manager
    log_key = ["docker-files-test", uuid.uuid4().hex, "step"]
    try:
        with manager.capture_logs(log_key):
            print("hello from a step", flush=True)
        assert manager.cloud_storage_has_logs(log_key, ComputeIOType.STDOUT)
        keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert any(k.startswith("dagster/compute-logs/") and k.endswith(".out") for k in keys)
        assert b"hello from a step" in manager.get_log_data(log_key).stdout
    finally:
        manager.delete_logs(log_key=log_key)


# ---- scripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["postgres/init-databases.sh", "minio/setup.sh"])
def test_shell_scripts_parse(script):
    path = DOCKER / script
    assert path.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_postgres_init_script_is_mounted_where_the_image_runs_it():
    volumes = services()["postgres"]["volumes"]
    mounts = [v for v in volumes if v.startswith("./postgres/init-databases.sh:")]
    assert len(mounts) == 1
    assert mounts[0].split(":")[1].startswith("/docker-entrypoint-initdb.d/")
    assert os.access(DOCKER / "postgres" / "init-databases.sh", os.X_OK)


@pytest.mark.postgres
def test_postgres_init_script_creates_both_databases(postgres_admin):
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    admin = postgres_admin.url
    suffix = uuid.uuid4().hex[:8]
    names = {
        "DAGSTER_PG_USER": f"dagster_{suffix}",
        "DAGSTER_PG_DB": f"dagster_db_{suffix}",
        "EXPORT_DB_USER": f"export_{suffix}",
        "EXPORT_DB_NAME": f"export_db_{suffix}",
    }
    env = {
        **os.environ,
        **names,
        "POSTGRES_USER": admin.username or "postgres",
        "PGHOST": admin.host or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        "DAGSTER_PG_PASSWORD": "it's a test",  # quoting of a literal with a quote
        "EXPORT_DB_PASSWORD": "test-password",
    }
    if admin.password:
        env["PGPASSWORD"] = admin.password
    try:
        result = subprocess.run(
            ["sh", str(DOCKER / "postgres" / "init-databases.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        with postgres_admin.connect() as conn:
            owners = dict(
                conn.execute(
                    text(
                        "select d.datname, r.rolname from pg_database d"
                        " join pg_roles r on r.oid = d.datdba where d.datname = any(:dbs)"
                    ),
                    {"dbs": [names["DAGSTER_PG_DB"], names["EXPORT_DB_NAME"]]},
                ).all()
            )
            assert owners == {
                names["DAGSTER_PG_DB"]: names["DAGSTER_PG_USER"],
                names["EXPORT_DB_NAME"]: names["EXPORT_DB_USER"],
            }
            can_connect = conn.execute(
                text("select has_database_privilege(:role, :db, 'CONNECT')"),
                {"role": names["EXPORT_DB_USER"], "db": names["DAGSTER_PG_DB"]},
            ).scalar()
            assert can_connect is False, "the app's role must not reach Dagster's database"
    finally:
        with postgres_admin.connect() as conn:
            for db in (names["DAGSTER_PG_DB"], names["EXPORT_DB_NAME"]):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            for role in (names["DAGSTER_PG_USER"], names["EXPORT_DB_USER"]):
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


# ---- docker/README.md ------------------------------------------------------------------


README = DOCKER / "README.md"


def readme_launcher_snippets() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [yaml.safe_load(b)["run_launcher"] for b in blocks if "run_launcher:" in b]


def test_readme_quick_start_uses_these_files():
    readme = README.read_text()
    assert "cp docker/.env.example docker/.env" in readme
    assert "docker compose -f docker/docker-compose.yml --env-file docker/.env up --build" in readme
    for link in re.findall(r"`((?:postgres|minio)/[\w.-]+)`", readme):
        assert (DOCKER / link).exists(), link


@pytest.mark.parametrize(
    "snippet", readme_launcher_snippets(), ids=lambda s: s["class"] if s else "?"
)
def test_readme_run_launcher_snippets_are_valid_config(snippet):
    from dagster._config import validate_config

    module = importlib.import_module(snippet["module"])
    launcher_class = getattr(module, snippet["class"])
    result = validate_config(launcher_class.config_type(), snippet["config"])
    assert result.success, [e.message for e in result.errors]


def test_readme_shows_the_three_launchers():
    classes = {s["class"] for s in readme_launcher_snippets()}
    assert classes == {"DockerRunLauncher", "EcsRunLauncher", "K8sRunLauncher"}
