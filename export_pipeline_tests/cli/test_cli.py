import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from export_pipeline.cli.main import main
from export_pipeline_tests import REPO_ROOT

REPO = REPO_ROOT


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORT_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EXPORT_DB_URL", raising=False)
    return tmp_path / "home"


def test_db_init_request_and_status(env, capsys):
    assert main(["db", "init"]) == 0
    assert main(["db", "init"]) == 0  # idempotent
    assert "export_requests is ready" in capsys.readouterr().out
    code = main(
        [
            "request",
            "--project-id",
            "p1",
            "--user-id",
            "u1",
            "--resolution",
            "1080p",
            "--aspect-ratio",
            "9:16",
            "--quality",
            "low",
            "--clip",
            "https://cdn.example/a.mp4",
            "--clip",
            "https://cdn.example/b.mp4,1.5,2",
        ]
    )
    assert code == 0
    request_id = int(capsys.readouterr().out.strip())
    assert main(["status", str(request_id)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "pending" and row["aspect_ratio"] == "9:16"
    assert row["clips"] == [
        {"url": "https://cdn.example/a.mp4", "scene_number": 1},
        {"url": "https://cdn.example/b.mp4", "trim_start": 1.5, "duration": 2.0, "scene_number": 2},
    ]


def test_request_from_json_file(env, tmp_path, capsys):
    clips = tmp_path / "clips.json"
    clips.write_text(json.dumps([{"url": "https://cdn.example/a.mp4", "scene_number": 4}]))
    assert main(["request", "--project-id", "p", "--user-id", "u", "--clips-json", str(clips)]) == 0
    request_id = int(capsys.readouterr().out)
    main(["status", str(request_id)])
    assert json.loads(capsys.readouterr().out)["clips"][0]["scene_number"] == 4


def test_invalid_request_is_refused_before_insert(env, capsys):
    code = main(
        [
            "request",
            "--project-id",
            "p",
            "--user-id",
            "u",
            "--resolution",
            "8k",
            "--clip",
            "https://x/a.mp4",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "resolution '8k' is not supported" in err
    assert main(["status", "1"]) == 1
    assert "no export request with id 1" in capsys.readouterr().err


def test_bad_clip_option_is_a_usage_error(env, capsys):
    with pytest.raises(SystemExit):
        main(["request", "--project-id", "p", "--user-id", "u", "--clip", "https://x/a.mp4,soon"])
    assert "--clip" in capsys.readouterr().err


@pytest.mark.e2e
def test_demo_command_runs_an_export_visible_to_dagster(tmp_path, monkeypatch):
    """`export-pipeline demo` as a user runs it: a fresh directory with the repo's
    dagster.yaml (as at the repo root), no services, nothing set but the data dir."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DAGSTER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "export_pipeline", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "complete"' in done.stdout
    output = Path(done.stdout.split("Output video: ")[1].splitlines()[0])
    assert output.is_file() and output.is_relative_to(tmp_path / ".data" / "storage")
    monkeypatch.chdir(tmp_path)  # dagster.yaml's paths are relative to where dagster starts
    instance = DagsterInstance.from_config(str(tmp_path))
    (run,) = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == "exp-1"
    assert instance.get_dynamic_partitions("export_requests") == ["exp-1"]
    assert (tmp_path / ".data" / "dagster" / "storage").is_dir()
    assert not list((tmp_path / ".data").glob("**/*.download"))
    instance.dispose()


def test_definitions_validate_with_the_workspace():
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "All code locations passed validation" in done.stderr + done.stdout


def test_readme_quick_start_commands_exist():
    readme = (REPO / "README.md").read_text()
    assert "bash .ci/bootstrap demo" in readme and "bash .ci/bootstrap test" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash .ci/bootstrap test" in ci  # CI runs the README's test command
    bootstrap = (REPO / ".ci" / "bootstrap").read_text()
    assert "export-pipeline demo" in bootstrap and "pytest --cov=export_pipeline" in bootstrap


def test_readme_lists_every_command():
    """README's command table has a row for each verb the parser knows, and no other."""
    from export_pipeline.cli.main import parser

    commands = next(a for a in parser()._actions if a.dest == "command").choices
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Command line") : readme.index("\n## Configuration")]
    documented = set(re.findall(r"^\| `export-pipeline ([a-z]+)", section, re.M))
    assert documented == set(commands)


def test_list_and_status_show_time_left_and_place_in_queue(env, capsys):
    from datetime import timedelta

    from export_pipeline.domain import status as st
    from export_pipeline.domain.clock import utcnow
    from export_pipeline.io.appdb.store import RequestStore

    assert (
        main(["request", "--project-id", "p", "--user-id", "u", "--clip", "https://x/a.mp4"]) == 0
    )
    request_id = int(capsys.readouterr().out)
    store = RequestStore.from_url(f"sqlite:///{env / 'app.db'}")
    finish = utcnow() + timedelta(seconds=125)
    store.transition(request_id, st.QUEUED, eta_s=125, estimated_finish_at=finish)
    store.set_queue_place(request_id, 3, "waiting for a free worker", 125, finish)
    assert main(["list"]) == 0
    head, line = capsys.readouterr().out.splitlines()
    assert head.split("\t")[:5] == ["id", "status", "progress", "eta", "queue"]
    assert re.match(rf"{request_id}\tqueued\t0%\t2m0[45]s\t#3\tu\t", line), line
    assert main(["status", str(request_id)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["eta_s"], row["queue_position"]) == (125, 3)
    assert row["queue_reason"] == "waiting for a free worker"
