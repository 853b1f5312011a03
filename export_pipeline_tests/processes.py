"""The processes the tests start, found and stopped, whoever their parent is by then.

A Dagster daemon or webserver starts code servers (`dagster api grpc`), a code server starts
run workers, a run worker starts step processes and FFmpeg. Stopping the program the test
started is not enough: its children are re-parented to init when it exits, and a code server
that waits for its runs to end outlives it (then, once the test has dropped its database,
forever: Dagster's cleanup thread dies on the missing database, and with it the only way the
server ends). So:

- every process a test run starts carries `RUN_MARKER` in its environment (set by the root
  conftest), and every `Service` adds a marker of its own: `/proc/<pid>/environ` finds them
  all, however they were started and whoever adopted them;
- a `Service` runs in a session (and process group) of its own and `stop` returns only once
  every process of it is gone: SIGTERM to the group, a grace period, then SIGKILL to each
  one left;
- at the end of a test run the root conftest fails if any marked process is still alive,
  naming the test after which it was first seen (and kills it).

Linux only (`/proc`), as the suite is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

RUN_MARKER = "PIPELINE_TESTS_RUN"  # not EXPORT_/DAGSTER_: tests hand their children env
SERVICE_MARKER = "PIPELINE_TESTS_SERVICE"  # copies without those two prefixes
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    started: int  # clock ticks after boot: with the pid, tells a reused pid apart
    args: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")  # a zombie has ended; only its parent's wait is due

    def age_s(self) -> float:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - self.started / _TICKS

    def environ(self) -> dict[str, str]:
        try:
            raw = Path(f"/proc/{self.pid}/environ").read_bytes()
        except OSError:  # gone, or not ours to read
            return {}
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}

    def describe(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}, {self.age_s():.0f} s old): {self.args[:240]}"


def read(pid: int) -> Proc | None:
    """One process from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        state=fields[0],
        started=int(fields[19]),
        args=args.replace(b"\0", b" ").decode(errors="replace").strip(),
    )


def processes() -> list[Proc]:
    """Every live process but this one."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            proc = read(int(entry))
            if proc is not None and proc.alive:
                found.append(proc)
    return found


def marked(name: str, value: str) -> list[Proc]:
    """Live processes started with `name=value` in their environment."""
    return [p for p in processes() if p.environ().get(name) == value]


def descendants(pid: int, among: Iterable[Proc] | None = None) -> list[Proc]:
    """Live processes below `pid` (those still attached to it)."""
    procs = list(processes() if among is None else among)
    below, frontier = [], {pid}
    while frontier:
        children = [p for p in procs if p.ppid in frontier]
        below += children
        frontier = {p.pid for p in children}
    return below


def left_behind(run_id: str, parent: int) -> list[Proc]:
    """Live processes of the test run `run_id` (marked), or still below `parent` (the test
    process). Python's multiprocessing helpers (resource tracker, forkserver) are the test
    process's own and end with it."""
    everything = processes()
    below = {p.pid for p in descendants(parent, everything)}
    return [
        p
        for p in everything
        if (p.pid in below or p.environ().get(RUN_MARKER) == run_id)
        and not (p.ppid == parent and "from multiprocessing." in p.args)
    ]


def wait_gone(find: Callable[[], list[Proc]], timeout_s: float) -> list[Proc]:
    """Poll `find` until it finds nothing or the time is up; what it found last."""
    deadline = time.monotonic() + timeout_s
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill(procs: Iterable[Proc], sig: int = signal.SIGKILL) -> None:
    """Signal each process, if it is still the one found (not a reused pid)."""
    for proc in procs:
        current = read(proc.pid)
        if current is not None and current.started == proc.started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)


class Service:
    """A long-running program a test starts (`dagster-daemon`, `dagster-webserver`): in a
    session of its own, marked, so that it can be stopped with everything it started."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.argv, self.cwd, self.log_path = argv, cwd, log
        self.marker = uuid.uuid4().hex
        self.env = {**env, SERVICE_MARKER: self.marker}
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> Service:
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one signal reaches all of it
        )
        return self

    def members(self) -> list[Proc]:
        """Its live processes: marked, or still in its session."""
        sid = self.process.pid if self.process else None
        return [
            p for p in processes() if p.sid == sid or p.environ().get(SERVICE_MARKER) == self.marker
        ]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 30.0) -> list[Proc]:
        """SIGTERM to the group, then wait (`grace_s`) for every process of it to end: the
        program, and what it started (a code server ends once its runs have). SIGKILL to
        each one left. Returns those that had to be killed."""
        if self.process is None:
            return []
        self._signal_group(signal.SIGTERM)
        kill(self.members(), signal.SIGTERM)  # any that left the group
        left = wait_gone(self.members, grace_s)
        if left:
            kill(left)
            self._signal_group(signal.SIGKILL)
        self._reap()
        survivors = wait_gone(self.members, 10.0)
        if survivors:  # pragma: no cover - SIGKILL does not fail but for a stuck kernel call
            raise RuntimeError("still alive after SIGKILL:\n" + describe(survivors))
        return left

    def kill(self) -> None:
        """What a host crash does: SIGKILL to all of it at once; returns once it is gone."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        kill(self.members())
        self._reap()
        wait_gone(self.members, 10.0)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is empty
            os.killpg(self.process.pid, sig)

    def _reap(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):  # not after SIGKILL
            self.process.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None


def describe(procs: Iterable[Proc]) -> str:
    return "\n".join(f"  {p.describe()}" for p in procs)
