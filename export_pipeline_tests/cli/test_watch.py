"""`export-pipeline watch ID` as a creator runs it: a real process in a pseudo-terminal (and
on a pipe), following a SQLite row the test moves along as the pipeline would."""

import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from export_pipeline.cli.watch import duration_text, render
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import FailureCause
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests import REPO_ROOT

REPO = REPO_ROOT
TIMEOUT_S = 60.0


class Output:
    """What the watcher has written so far, read from a file descriptor as it comes."""

    def __init__(self, fd: int):
        self.fd, self.text = fd, ""

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + TIMEOUT_S
        while not (match := re.search(pattern, self.text)):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never appeared in {self.text!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the pty closes when the process exits
                    chunk = b""
                assert chunk, f"output ended before {pattern!r}: {self.text!r}"
                self.text += chunk.decode()
        return match


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def app_store(home) -> RequestStore:
    home.mkdir(parents=True)
    store = RequestStore.from_url(f"sqlite:///{home / 'app.db'}")
    store.create_schema()
    return store


def start_watch(home: Path, request_id: int, tty: bool):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORT_")}
    env["EXPORT_PIPELINE_HOME"] = str(home)
    command = [sys.executable, "-m", "export_pipeline", "watch", str(request_id)]
    command += ["--interval", "0.1"]
    if tty:
        main, child = pty.openpty()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdin=child, stdout=child)
        os.close(child)
        return process, Output(main)
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE)
    return process, Output(process.stdout.fileno())


def new_request(store: RequestStore) -> int:
    request_id = store.insert(
        project_id="p", user_id="ann", resolution="720p", quality="low",
        clips=[{"url": "https://cdn.example/a.mp4", "scene_number": 1}],
    )  # fmt: skip
    finish = utcnow() + timedelta(seconds=90)
    store.transition(request_id, st.QUEUED, eta_s=90, estimated_finish_at=finish)
    store.set_queue_place(request_id, 2, "waiting for your other exports", 90, finish)
    return request_id


def process_to(store: RequestStore, request_id: int, progress: int, eta_s: int) -> None:
    store.transition(request_id, st.PROCESSING, run_id="run-1")
    finish = utcnow() + timedelta(seconds=eta_s)
    store.set_progress(request_id, progress, "run-1", eta_s=eta_s, estimated_finish_at=finish)


def test_watch_draws_a_live_bar_until_the_export_completes(app_store, home):
    request_id = new_request(app_store)
    process, out = start_watch(home, request_id, tty=True)
    try:
        # counting down from 90 s (more gone where the machine is slow to start the command)
        line = out.wait_for(r"exp-\d+ queued .*\n?.*ETA (1m[0-3]\d|[3-5]\d)s")
        assert f"exp-{request_id} queued" in line.group(0)
        assert "[" + "." * 24 + "]   0%" in out.text
        assert "#2 in queue (waiting for your other exports)" in out.text

        process_to(app_store, request_id, 50, eta_s=42)
        out.wait_for(r"processing +\[#{12}\.{12}\]  50%  ETA 4[0-2]s")
        assert "\r" in out.text and "\x1b[K" in out.text  # redrawn in place

        app_store.transition(
            request_id, st.COMPLETE, only_run_id="run-1", progress=100,
            video_url="file:///videos/exp.mp4",
        )  # fmt: skip
        out.wait_for(r"complete +\[#{24}\] 100%  file:///videos/exp\.mp4")
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        process.kill()
        os.close(out.fd)


def test_watch_exits_1_when_the_export_fails(app_store, home):
    request_id = new_request(app_store)
    process, out = start_watch(home, request_id, tty=True)
    try:
        out.wait_for(r"#2 in queue")
        process_to(app_store, request_id, 30, eta_s=600)
        out.wait_for(r"30%  ETA (10m00s|9m5\ds)")
        app_store.fail(request_id, st.FAILED, "encoded_video failed: boom", FailureCause.FFMPEG)
        out.wait_for(r"failed .*  30%  encoded_video failed: boom")
        assert process.wait(timeout=TIMEOUT_S) == 1
    finally:
        process.kill()
        os.close(out.fd)


def test_watch_on_a_pipe_prints_a_line_per_change(app_store, home):
    request_id = new_request(app_store)
    process, out = start_watch(home, request_id, tty=False)
    try:
        out.wait_for(r"#2 in queue .*ETA 1m30s\n")  # the written eta_s: no countdown
        process_to(app_store, request_id, 40, eta_s=20)
        out.wait_for(r"40%  ETA 20s\n")
        app_store.request_cancel(request_id)
        app_store.fail(
            request_id, st.CANCELED, "canceled at the app's request", FailureCause.CANCELED
        )
        out.wait_for(r"canceled .*canceled at the app's request\n")
        assert process.wait(timeout=TIMEOUT_S) == 1
    finally:
        process.kill()
        process.stdout.close()
    lines = out.text.splitlines()
    assert len(lines) == 3 and len(set(lines)) == 3, lines  # one line per change
    assert "\r" not in out.text and "\x1b" not in out.text


def test_watch_of_a_missing_export_fails(app_store, home):
    process, out = start_watch(home, 999, tty=False)
    assert process.wait(timeout=TIMEOUT_S) == 1
    process.stdout.close()


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (0, "0s"), (59, "59s"), (65, "1m05s"), (3720, "1h02m")]
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_render_shows_no_eta_once_finished():
    row = {"id": 3, "status": "complete", "progress": 100, "eta_s": None, "video_url": "u"}
    assert render(row) == f"exp-3 complete   [{'#' * 24}] 100%  u"
