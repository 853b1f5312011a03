"""`processes`: a service stops with everything it started, whoever adopted it and whatever
it does with SIGTERM; and the end-of-run check finds a process the tests left behind."""

from __future__ import annotations

import os
import subprocess

from export_pipeline_tests import conftest, processes
from export_pipeline_tests.daemon import wait_for
from export_pipeline_tests.processes import Service

# A program that ignores SIGTERM and starts two more that do too: one in its process group,
# one in a session of its own (out of reach of the group's signals). Ignored signals stay
# ignored across exec, so each `sleep` ignores SIGTERM as well.
STUBBORN = """
trap '' TERM
setsid sleep 301 &
sleep 302 &
touch "$1"
wait
"""


def test_a_service_stops_with_what_it_started_even_when_they_ignore_sigterm(tmp_path):
    ready = tmp_path / "ready"
    service = Service(
        ["sh", "-c", STUBBORN, "sh", str(ready)], env=dict(os.environ), cwd=tmp_path,
        log=tmp_path / "service.log",
    ).start()  # fmt: skip

    def started():
        members = service.members()
        sleeps = sorted(p.args for p in members if p.args.startswith("sleep"))
        return (
            ready.exists()
            and len(members) == 3
            and sleeps == ["sleep 301", "sleep 302"]
            and members
        )

    members = wait_for(started, 30, "the program and its two sleeps")
    escaped = next(p for p in members if p.args == "sleep 301")
    assert escaped.sid != service.process.pid  # left the session: found by its marker only

    killed = service.stop(grace_s=1.0)

    assert sorted(p.pid for p in killed) == sorted(p.pid for p in members)  # none obeyed TERM
    assert service.members() == []
    for proc in members:
        now = processes.read(proc.pid)
        assert now is None or now.started != proc.started or not now.alive


def test_a_service_that_obeys_sigterm_is_not_killed(tmp_path):
    service = Service(
        ["sh", "-c", "sleep 303 & wait"], env=dict(os.environ), cwd=tmp_path,
        log=tmp_path / "service.log",
    ).start()  # fmt: skip
    wait_for(lambda: len(service.members()) == 2, 30, "the shell and its sleep")
    assert service.stop(grace_s=20.0) == []
    assert service.members() == [] and service.process.returncode == -15


def test_the_end_of_run_check_finds_an_orphan_of_this_run():
    """A process whose parent has exited (adopted by init): no longer below the test process,
    still found by the marker it inherited."""
    done = subprocess.run(
        ["sh", "-c", "sleep 304 > /dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = processes.read(int(done.stdout))
    try:
        assert orphan is not None and orphan.ppid != os.getpid()
        assert orphan.environ()[processes.RUN_MARKER] == conftest.RUN_ID
        found = processes.left_behind(conftest.RUN_ID, os.getpid())
        assert orphan.pid in {p.pid for p in found}
    finally:
        processes.kill([orphan])
    wait_for(
        lambda: orphan.pid not in {p.pid for p in processes.left_behind(conftest.RUN_ID, os.getpid())},
        10, "the orphan to be gone",
    )  # fmt: skip


def test_this_process_and_its_multiprocessing_helpers_are_not_left_behind():
    import multiprocessing.resource_tracker

    multiprocessing.resource_tracker.ensure_running()  # a child of this process, for good
    left = processes.left_behind(conftest.RUN_ID, os.getpid())
    assert os.getpid() not in {p.pid for p in left}
    assert not [p for p in left if "multiprocessing" in p.args and p.ppid == os.getpid()]
