"""Run an FFmpeg command: progress from `-progress pipe:1`, errors that keep FFmpeg's stderr.

The child process never outlives the call: whatever stops `run_ffmpeg` (an error, a timeout,
an exception from the progress callback, KeyboardInterrupt, Dagster interrupting the step), the
process is killed and reaped in a `finally`.
"""

from __future__ import annotations

import ctypes
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
STDERR_LIMIT = 4096  # bytes of stderr kept for errors
_MEANINGFUL_LINES = 5
# How FFmpeg (and the loader before it) says that an allocation failed under RLIMIT_AS.
_OUT_OF_MEMORY = re.compile(
    r"Cannot allocate memory|out of memory|failed to map segment|bad_alloc|"
    r"cannot allocate|Error while opening encoder",
    re.IGNORECASE,
)

_CPU_SIGNALS = re.compile(r"received signal 24|system signals, hard exiting", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """What one FFmpeg or ffprobe process may use: address space (RLIMIT_AS, MB) and CPU
    time (RLIMIT_CPU, seconds, all threads together); 0 means no limit.

    Defaults: a 1080p or 4k segment encode peaks near 800 MB of resident memory and stays
    well inside 3 GB of address space; a 10-minute 4k clip encodes within 2 hours of CPU.
    A file that would take more is not a clip worth the worker: it fails with a message
    that says which limit it hit.
    """

    memory_mb: int = 3072
    cpu_s: int = 7200

    def apply(self) -> None:
        """In the child, before exec."""
        if self.memory_mb > 0:
            size = self.memory_mb * 1024**2
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if self.cpu_s > 0:
            # SIGXCPU at the soft limit (reported as such), SIGKILL a little later.
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 5))

    def child_setup(self) -> Callable[[], None] | None:
        """The preexec function for subprocess: these limits, and death with the parent."""
        if sys.platform != "linux":
            return None

        def setup() -> None:
            _die_with_parent()
            self.apply()

        return setup

    def explain(self, returncode: int | None, stderr: str) -> str | None:
        """Why a process failed, when one of these limits is the reason."""
        # FFmpeg catches SIGXCPU: it exits on its own, or hard after more of them.
        if returncode == -signal.SIGXCPU or (self.cpu_s > 0 and _CPU_SIGNALS.search(stderr)):
            return f"used more than {self.cpu_s} CPU seconds, the limit per FFmpeg process"
        if self.memory_mb > 0 and _OUT_OF_MEMORY.search(stderr):
            return f"ran out of memory (limit {self.memory_mb} MB per FFmpeg process)"
        if returncode == -signal.SIGKILL:  # not ours: we only kill after raising otherwise
            return "was killed by the system (SIGKILL), most likely out of memory"
        return None


DEFAULT_LIMITS = Limits()


class FFmpegError(Exception):
    """FFmpeg failed. `stderr` is the tail of its stderr (about the last 4 KB).
    `over_limit` is set when a resource limit (memory, CPU time) was the reason: the same
    file would hit it again, so the failure is not worth a retry."""

    def __init__(
        self,
        argv: list[str],
        returncode: int | None,
        stderr: str,
        reason: str | None = None,
        over_limit: bool = False,
    ) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.reason = reason or f"exited with code {returncode}"
        self.over_limit = over_limit
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        program = self.argv[0] if self.argv else "ffmpeg"
        message = f"{program} {self.reason}"
        if lines:
            message += ": " + " | ".join(lines[-_MEANINGFUL_LINES:])
        return message


class _TailBuffer:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        data = b"".join(self._chunks)[-self._limit :]
        return data.decode("utf-8", errors="replace")


def _drain(stream: IO[bytes], sink: Callable[[bytes], None]) -> None:
    for line in iter(stream.readline, b""):
        sink(line)


def _lines(lines: queue.Queue[bytes | None], deadline: float | None) -> Iterator[str]:
    """Lines from the stdout reader until it ends; queue.Empty when the deadline passes."""
    while (raw := lines.get(timeout=_remaining(deadline))) is not None:
        yield raw.decode("utf-8", errors="replace")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Progress:
    """Forwards fractions to the callback: clamped to 1, only when they increase."""

    def __init__(self, on_progress: Callable[[float], None] | None) -> None:
        self._on_progress = on_progress
        self._done = 0.0

    def update(self, fraction: float) -> None:
        fraction = min(1.0, fraction)
        if self._on_progress is not None and fraction > self._done:
            self._done = fraction
            self._on_progress(fraction)


def parse_progress_time(line: str) -> float | None:
    """Seconds of output written, from one `-progress` line, or None for other lines.

    FFmpeg 5.1 reports microseconds in both `out_time_us` and (misnamed) `out_time_ms`;
    the value is "N/A" before the first frame.
    """
    key, sep, value = line.strip().partition("=")
    if not sep or key not in ("out_time_us", "out_time_ms"):
        return None
    try:
        return int(value) / 1_000_000
    except ValueError:
        return None


def run_ffmpeg(
    argv: list[str],
    *,
    duration_s: float | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Run `argv` to completion; raise FFmpegError on a non-zero exit or after `timeout_s`.
    The process runs under `limits` (memory, CPU time); hitting one says so.

    With `duration_s` (the expected output duration) and `on_progress`, the callback gets the
    fraction done, 0..1, never decreasing, and 1.0 once FFmpeg has succeeded. It runs
    on the calling thread, so an exception it raises stops (and kills) FFmpeg.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    progress = _Progress(on_progress)
    stderr_tail = _TailBuffer(STDERR_LIMIT)
    lines: queue.Queue[bytes | None] = queue.Queue()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limits.child_setup(),  # noqa: PLW1509
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    def read_stdout() -> None:
        try:
            _drain(stdout, lines.put)
        finally:
            lines.put(None)  # end of output

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=_drain, args=(stderr, stderr_tail.add), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        try:
            for line in _lines(lines, deadline):
                seconds = parse_progress_time(line)
                if seconds is not None and duration_s:
                    progress.update(max(0.0, seconds) / duration_s)
            returncode = proc.wait(timeout=_remaining(deadline))
        except (queue.Empty, subprocess.TimeoutExpired):
            _stop(proc, readers)
            reason = f"timed out after {timeout_s:g} s"
            raise FFmpegError(argv, proc.returncode, stderr_tail.text(), reason) from None
        _stop(proc, readers)  # already exited: just collect the rest of stderr
        if returncode != 0:
            text = stderr_tail.text()
            reason = limits.explain(returncode, text)
            raise FFmpegError(argv, returncode, text, reason, over_limit=reason is not None)
        progress.update(1.0)
    finally:
        # Whatever interrupted us (including KeyboardInterrupt), FFmpeg must not outlive it.
        _stop(proc, readers)
        stdout.close()
        stderr.close()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL FFmpeg if its parent dies.

    `finally` cannot run when the run worker itself is killed outright (SIGKILL, OOM);
    this keeps an orphaned FFmpeg from burning CPU and disk after it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes], readers: list[threading.Thread]) -> None:
    """Kill the process if it still runs, reap it, and let the pipe readers finish."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for reader in readers:
        reader.join(timeout=5)
