"""docker/envgen.py is the one writer of the deployment's variable lists: compose's
environment blocks, dagster.yaml's run_launcher.env_vars, executor-docker.yaml's env_vars
and .env.example. These tests fail when a file and the generator disagree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def envgen():
    spec = importlib.util.spec_from_file_location("envgen", DOCKER / "envgen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["envgen"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_files_are_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(DOCKER / "envgen.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, (
        f"{result.stderr}run `python docker/envgen.py` and commit what it writes"
    )


def test_the_check_notices_a_file_edited_by_hand(tmp_path, monkeypatch):
    gen = envgen()
    copy = tmp_path / "docker"
    copy.mkdir()
    for name in ("docker-compose.yml", "dagster.yaml", "executor-docker.yaml", ".env.example"):
        (copy / name).write_text((DOCKER / name).read_text())
    monkeypatch.setattr(gen, "DOCKER", copy)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 0
    executor = copy / "executor-docker.yaml"
    executor.write_text(executor.read_text().replace("  - EXPORT_WEBHOOK_URL\n", ""))
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0  # rewrites it
    assert "  - EXPORT_WEBHOOK_URL\n" in executor.read_text()


def test_every_setting_of_the_readme_reaches_every_container_list():
    gen = envgen()
    settings = {s.name for s in gen.settings()}
    assert len(settings) > 60
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    run_env = set(compose["x-run-env"])
    launcher = set(
        yaml.safe_load((DOCKER / "dagster.yaml").read_text())["run_launcher"]["config"]["env_vars"]
    )
    steps = set(yaml.safe_load((DOCKER / "executor-docker.yaml").read_text())["env_vars"])
    expected = settings - gen.NOT_IN_CONTAINERS
    for where, names in (("compose", run_env), ("run_launcher", launcher), ("steps", steps)):
        assert expected <= names, f"{where} lacks {sorted(expected - names)}"
    # The operator settings the issue found missing, by name.
    for name in (
        "EXPORT_WEBHOOK_URL",
        "EXPORT_WEBHOOK_SECRET",
        "EXPORT_RETENTION_DAYS",
        "EXPORT_DAILY_LIMIT",
        "EXPORT_STORAGE_QUOTA_MB",
        "EXPORT_EXPIRY_REMINDER_DAYS",
    ):
        assert name in run_env and name in launcher and name in steps, name
    services = compose["services"]
    for service in ("user_code", "daemon"):
        assert expected <= set(services[service]["environment"]), service


def test_env_example_lets_an_operator_set_them():
    gen = envgen()
    listed = {
        line.split("=", 1)[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for variable in gen.variables():
        if variable.example is not None:
            assert variable.name in listed, variable.name
    fixed = set(gen.FIXED)
    assert not fixed & listed, "values compose fixes are not offered in .env.example"
