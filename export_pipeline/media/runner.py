"""Run an FFmpeg command: progress from `-progress pipe:1`, errors that keep FFmpeg's stderr.

The child process never outlives the call: whatever stops `run_ffmpeg` (an error, a timeout,
an exception from the progress callback, KeyboardInterrupt, Dagster interrupting the step), the
process is killed and reaped in a `finally`.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.media.inputs import MAX_INPUT_PIXELS, MAX_INPUT_SIDE

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
STDERR_LIMIT = 4096  # bytes of stderr kept for errors
STDERR_CONTEXT_CHARS = 3000  # of them, what an error tracker is sent
_MEANINGFUL_LINES = 5
# How FFmpeg, its libraries and the loader say that an allocation failed (ENOMEM's text,
# libavutil's and x264's own words), as seen under a memory limit.
_OUT_OF_MEMORY = re.compile(
    r"Cannot allocate memory|Could not allocate|out of memory|malloc of size \d+ failed|"
    r"failed to map segment|bad_alloc",
    re.IGNORECASE,
)
# What FFmpeg says when a thread, a frame buffer or the encoder could not be set up: out of
# memory too when the process had used a good part of its limit (SHARE_NEAR_LIMIT of it in
# resident memory; a failed allocation under RLIMIT_DATA was measured at 43-95 %), else a
# plain failure (bad frame sizes are told apart by their own message).
_MAYBE_OUT_OF_MEMORY = re.compile(
    r"Resource temporarily unavailable|get_buffer\(\) failed|Error while opening (?:en|de)coder"
)
_BAD_FRAME_SIZE = re.compile(r"image parameters invalid|exceeds specified max pixel count")
SHARE_NEAR_LIMIT = 0.25
# FFmpeg catches SIGXCPU and exits 255 ("Immediate exit requested"), or hard (123) after more.
_CPU_SIGNALS = re.compile(r"received signal 24|system signals, hard exiting", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """What one clip, and each FFmpeg or ffprobe process working on it, may cost.

    `max_side`/`max_pixels`: the largest frame accepted (checked at probe time, and by the
    decoder itself through `-max_pixels`). `memory_mb`: the process's data segment
    (RLIMIT_DATA: heap, anonymous mappings, thread stacks; not the ~300 MB of shared
    libraries and reserved-but-unused address space that RLIMIT_AS would also count).
    `cpu_s`: CPU time, all threads together (RLIMIT_CPU). 0 means no limit.

    Defaults (bench_memory, 3 encoder threads: a 2-CPU worker): a 4k segment from a 1080p
    to 6k source peaks at 0.9-1.1 GB of data segment (720-900 MB resident), a 1080p one at
    0.4-0.5 GB. The encoder's threads follow the worker's CPUs (`encoder_threads`); each adds
    about 110 MB of data segment at 4k: 3 GB holds 12 of them (an 8-CPU worker).
    7200 CPU seconds is twice `EXPORT_FFMPEG_TIMEOUT_S` at full use of 2 CPUs; a 10-minute 4k
    clip takes about 2400. A file that would take more fails with a message naming the limit.
    """

    memory_mb: int = 3072
    cpu_s: int = 7200
    max_side: int = MAX_INPUT_SIDE
    max_pixels: int = MAX_INPUT_PIXELS

    def apply(self) -> None:
        """In the child, before exec."""
        if self.memory_mb > 0:  # RLIMIT_DATA counts mmap'd memory since Linux 4.7
            size = self.memory_mb * 1024**2
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))
        if self.cpu_s > 0:
            # SIGXCPU at the soft limit, SIGKILL 5 CPU seconds later if it is still running.
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 5))

    def child_setup(self) -> Callable[[], None] | None:
        """The preexec function for subprocess: these limits, and death with the parent."""
        if sys.platform != "linux":
            return None

        def setup() -> None:
            _die_with_parent()
            self.apply()

        return setup

    def explain(
        self, returncode: int | None, stderr: str, usage: Usage | None = None
    ) -> str | None:
        """Why a process failed, when one of these limits is the reason. `usage` (what it
        used, when known) tells the limits apart whatever FFmpeg printed."""
        over_cpu = self.cpu_s > 0 and (
            returncode == -signal.SIGXCPU
            or (usage is not None and usage.cpu_s >= self.cpu_s)
            or bool(_CPU_SIGNALS.search(stderr))
        )
        if over_cpu:
            return f"used more than {self.cpu_s} CPU seconds, the limit per FFmpeg process"
        if _OUT_OF_MEMORY.search(stderr) or self._near_memory_limit(stderr, usage):
            if self.memory_mb > 0:
                return f"ran out of memory (limit {self.memory_mb} MB per FFmpeg process)"
            return "ran out of memory"
        if returncode == -signal.SIGKILL:  # not ours: we only kill after raising otherwise
            return "was killed by the system (SIGKILL), most likely out of memory"
        return None

    def _near_memory_limit(self, stderr: str, usage: Usage | None) -> bool:
        return (
            self.memory_mb > 0
            and usage is not None
            and usage.peak_rss_mb >= self.memory_mb * SHARE_NEAR_LIMIT
            and bool(_MAYBE_OUT_OF_MEMORY.search(stderr))
            and not _BAD_FRAME_SIZE.search(stderr)
        )


@dataclass(frozen=True)
class Usage:
    """What a finished process used: CPU seconds (all threads), peak resident memory (MB)."""

    cpu_s: float
    peak_rss_mb: float


@dataclass(frozen=True)
class Captured:
    """A finished command's exit code and output; `over_limit` says which limit made it
    fail, if one did; `usage` what it used (None where that cannot be known)."""

    returncode: int
    stdout: bytes
    stderr: str
    over_limit: str | None
    usage: Usage | None = None


DEFAULT_LIMITS = Limits()


class FFmpegError(ExportFailure):
    """FFmpeg failed (cause `ffmpeg`). `stderr` is the tail of its stderr (about the last
    4 KB). `over_limit` is set when a resource limit (memory, CPU time) was the reason: the
    same file would hit it again, so the failure is permanent; otherwise another attempt
    may succeed. `context` holds what an error tracker shows beside the message."""

    def __init__(
        self,
        argv: list[str],
        returncode: int | None,
        stderr: str,
        reason: str | None = None,
        over_limit: bool = False,
    ) -> None:
        # A remote input's presigned URL holds a signature: never in a message or a log.
        self.argv = [_unsigned(arg) for arg in argv]
        self.returncode = returncode
        self.stderr = _unsigned(stderr)
        self.reason = reason or f"exited with code {returncode}"
        self.over_limit = over_limit
        super().__init__(
            self._message(),
            cause=FailureCause.FFMPEG,
            permanent=over_limit,
            context={
                "program": self.argv[0] if self.argv else "ffmpeg",
                "returncode": returncode,
                "reason": self.reason,
                "over_limit": over_limit,
                "stderr_tail": self.stderr[-STDERR_CONTEXT_CHARS:],
            },
        )

    def _message(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        program = self.argv[0] if self.argv else "ffmpeg"
        message = f"{program} {self.reason}"
        if lines:
            message += ": " + " | ".join(lines[-_MEANINGFUL_LINES:])
        return message


_URL_QUERY = re.compile(r"(https?://[^\s?'\"]*)\?[^\s'\"]*")


def _unsigned(text: str) -> str:
    """`text` with the query string of every http(s) URL in it cut off."""
    return _URL_QUERY.sub(r"\1?...", text)


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


class Stopped(Exception):
    """`run_ffmpeg` was told to stop (its `stop` event was set) and killed FFmpeg."""


# How often a run with a `stop` event looks at it while FFmpeg is quiet.
STOP_POLL_S = 0.2


def _lines(
    lines: queue.Queue[bytes | None], deadline: float | None, stop: threading.Event | None
) -> Iterator[str]:
    """Lines from the stdout reader until it ends; queue.Empty when the deadline passes,
    Stopped as soon as `stop` is set."""
    while True:
        if stop is not None and stop.is_set():
            raise Stopped("stopped")
        remaining = _remaining(deadline)
        wait = remaining
        if stop is not None:  # wake up now and then to look at `stop`
            wait = STOP_POLL_S if remaining is None else min(STOP_POLL_S, remaining)
        try:
            raw = lines.get(timeout=wait)
        except queue.Empty:
            if wait != remaining:
                continue  # only a look at `stop`: the deadline is still ahead
            raise
        if raw is None:
            return
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


def parse_progress_frames(line: str) -> int | None:
    """Video frames written so far, from one `-progress` line (`frame=N`), or None."""
    key, sep, value = line.strip().partition("=")
    return int(value) if sep and key == "frame" and value.isdigit() else None


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
    stop: threading.Event | None = None,
) -> int | None:
    """Run `argv` to completion; raise FFmpegError on a non-zero exit or after `timeout_s`.
    Returns the video frames FFmpeg reported writing (None without `-progress` output).
    The process runs under `limits` (memory, CPU time); hitting one says so.

    With `duration_s` (the expected output duration) and `on_progress`, the callback gets the
    fraction done, 0..1, never decreasing, and 1.0 once FFmpeg has succeeded. It runs
    on the calling thread, so an exception it raises stops (and kills) FFmpeg. Setting
    `stop` (from another thread) kills FFmpeg and raises Stopped within STOP_POLL_S.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    frames: int | None = None
    progress = _Progress(on_progress)
    stderr_tail = _TailBuffer(STDERR_LIMIT)
    lines: queue.Queue[bytes | None] = queue.Queue()
    proc = _spawn(argv, limits)
    stdout, stderr = proc.stdout, proc.stderr

    def read_stdout() -> None:
        try:
            _drain(stdout, lines.put)
        finally:
            lines.put(None)  # end of output

    readers = _read(read_stdout, lambda: _drain(stderr, stderr_tail.add))
    try:
        try:
            for line in _lines(lines, deadline, stop):
                frames = parse_progress_frames(line) if line.startswith("frame=") else frames
                seconds = parse_progress_time(line)
                if seconds is not None and duration_s:
                    progress.update(max(0.0, seconds) / duration_s)
            returncode, usage = _reap(proc, deadline)
        except (queue.Empty, subprocess.TimeoutExpired):
            _stop(proc, readers)
            reason = f"timed out after {timeout_s:g} s"
            raise FFmpegError(argv, proc.returncode, stderr_tail.text(), reason) from None
        _stop(proc, readers)  # already exited: just collect the rest of stderr
        if returncode != 0:
            text = stderr_tail.text()
            reason = limits.explain(returncode, text, usage)
            raise FFmpegError(argv, returncode, text, reason, over_limit=reason is not None)
        progress.update(1.0)
        return frames
    finally:
        # Whatever interrupted us (including KeyboardInterrupt), FFmpeg must not outlive it.
        _stop(proc, readers)
        stdout.close()
        stderr.close()


def capture(
    argv: list[str],
    *,
    timeout_s: float,
    limits: Limits = DEFAULT_LIMITS,
    stop: threading.Event | None = None,
) -> Captured:
    """Run a command that answers on stdout (ffprobe) under `limits`; its output whole.
    Raises subprocess.TimeoutExpired after `timeout_s`, and Stopped within STOP_POLL_S of
    `stop` being set (the process is gone by then)."""
    proc = _spawn(argv, limits)
    outputs: list[bytearray] = [bytearray(), bytearray()]
    out, err = proc.stdout, proc.stderr
    readers = _read(lambda: _drain(out, outputs[0].extend), lambda: _drain(err, outputs[1].extend))
    try:
        returncode, usage = _reap(proc, time.monotonic() + timeout_s, stop)
    finally:  # killed if still running; the readers have the whole output after this
        _stop(proc, readers)
        proc.stdout.close()
        proc.stderr.close()
    stderr = outputs[1].decode("utf-8", errors="replace")
    over = limits.explain(returncode, stderr, usage) if returncode != 0 else None
    return Captured(returncode, bytes(outputs[0]), stderr, over, usage)


def _spawn(argv: list[str], limits: Limits) -> subprocess.Popen[bytes]:
    """Start `argv` under `limits`, without input, its output and errors piped."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limits.child_setup(),  # noqa: PLW1509
    )
    assert proc.stdout is not None and proc.stderr is not None
    return proc


def _read(*readers: Callable[[], None]) -> list[threading.Thread]:
    """The pipe readers, started on threads of their own."""
    threads = [threading.Thread(target=reader, daemon=True) for reader in readers]
    for thread in threads:
        thread.start()
    return threads


def _reap(
    proc: subprocess.Popen[bytes], deadline: float | None, stop: threading.Event | None = None
) -> tuple[int, Usage | None]:
    """Wait for the process to exit (TimeoutExpired at the deadline, Stopped once `stop` is
    set) and reap it ourselves: its exit code, and what it used (None where Linux's pidfd
    is missing)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None

    def exited(wait: float | None) -> bool:
        if pidfd is not None:
            return bool(select.select([pidfd], [], [], wait)[0])
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        while True:
            if stop is not None and stop.is_set():
                raise Stopped("stopped")
            remaining = _remaining(deadline)
            wait = remaining if stop is None else min(STOP_POLL_S, remaining or STOP_POLL_S)
            if exited(wait):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, 0.0)
        if pidfd is None:
            return proc.returncode, None
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen will not wait for it again
    return proc.returncode, Usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


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
