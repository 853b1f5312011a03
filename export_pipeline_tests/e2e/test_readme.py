"""README's walk-through for an app developer and its runbook commands, run as written.

"Export your own clips" is taken from README.md and run with bash in a fresh directory that
holds what a clone has at its root for it (`dagster.yaml`, `workspace.yaml`, `.venv`), with
only the ports changed to free ones: clips served on loopback, `dagster dev` with its daemon,
a request with every column the app writes, `watch`, `status`, the CDN gone, `reexport`.
Then the runbook's `export-pipeline` commands run against what it left."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from export_pipeline.domain import status as st
from export_pipeline.domain.failures import FailureCause
from export_pipeline.io.appdb.schema import request_columns
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.daemon import BIN, REPO
from export_pipeline_tests.e2e.test_pipeline import ffprobe
from export_pipeline_tests.processes import Service, wait_gone

pytestmark = pytest.mark.e2e

README = (REPO / "README.md").read_text()


def block(section: str, language: str = "bash") -> str:
    """The first ```language block of README's `section`."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    body = README[start : end if end > 0 else None]
    return re.search(rf"```{language}\n(.*?)```", body, re.S).group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory shaped like the repository's root for the walk-through."""
    root = tmp_path / "clone"
    root.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        (root / name).write_text((REPO / name).read_text())
    (root / ".venv").symlink_to(BIN.parent)
    return root


def clean_env() -> dict[str, str]:
    """This process's environment without the settings of the tests: a new shell's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DAGSTER_"))}


def test_the_walkthrough_and_the_runbook_run_as_written(clone: Path):
    script = block("Export your own clips")
    cdn, ui = free_port(), free_port()
    assert "127.0.0.1:8000" in script and "dagster dev " in script
    script = script.replace("8000", str(cdn)).replace("dagster dev ", f"dagster dev -p {ui} ")
    # As typed in a terminal: job control on (a background job of a script without it ignores
    # SIGINT, and Dagster maps SIGTERM to SIGINT's handler, so `kill` would not stop it).
    (clone / "walk.sh").write_text("set -euo pipefail -m\n" + script)
    walk = Service(["bash", "walk.sh"], env=clean_env(), cwd=clone, log=clone / "walk.log")
    try:
        walk.start()
        code = walk.process.wait(timeout=900)
        log = (clone / "walk.log").read_text()
        dev_log = (clone / "dagster-dev.log").read_text()
        assert code == 0, f"{log[-3000:]}\n--- dagster dev:\n{dev_log[-3000:]}"
        # `kill $DAGSTER` stops the UI, the daemon and their code servers with it.
        assert wait_gone(walk.members, 60) == []
    finally:
        walk.stop()

    store = RequestStore.from_url(f"sqlite:///{clone / '.data' / 'app.db'}")
    first, again = store.list(limit=None)[::-1]
    assert first["status"] == again["status"] == st.COMPLETE, log[-2000:]
    for column in request_columns():  # every column the app writes, set and kept
        assert again[column] == first[column], column
        assert first[column] is not None or column == "audio_normalize", column  # NULL: on
    assert first["aspect_ratio"] == "9:16" and first["retention_days"] == 30
    assert f"exp-{first['id']} complete" in log and first["video_url"] in log
    video = ffprobe(Path(first["video_url"].removeprefix("file://")))
    streams = {s["codec_type"]: s for s in video["streams"]}
    assert (streams["video"]["width"], streams["video"]["height"]) == (720, 1280)
    assert float(video["format"]["duration"]) == pytest.approx(6.0, abs=0.1)

    # The runbook's commands, on this world: 42 is an export that failed (a copy of the
    # request, failed as a lost encode would), 43 the first export, proj-1 their project.
    failed = store.reexport(first["id"])
    assert store.fail(failed, st.FAILED, "encoded_video failed: test", FailureCause.FFMPEG)
    ids = {"42": str(failed), "43": str(first["id"]), "proj-1": first["project_id"]}
    runbook = [line.split("#")[0].strip() for line in block("Operations").splitlines()]
    commands = [line for line in runbook if line.startswith("export-pipeline ")]
    assert len(commands) >= 9
    env = {**clean_env(), "PATH": f"{BIN}:{os.environ['PATH']}"}
    for command in commands:
        argv = [re.sub(r"\b(42|43|proj-1)\b", lambda m: ids[m.group(1)], a)
                for a in shlex.split(command)]  # fmt: skip
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    assert store.get(failed)["cancel_requested_at"] is not None  # retried, then canceled
    assert store.get(first["id"])["status"] == st.PENDING  # backfilled: in line again
