"""FFmpeg as a worker runs it: one object holding where the binaries are, what each process
may cost (`Limits`), how long one command may take and the event that stops it, passed
once to everything that runs a command.

Commands are built as plain values naming their program `ffmpeg` or `ffprobe`
(`PROGRAMS`); the runner puts its own binaries in their place when it runs them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from export_pipeline.media.runner import DEFAULT_LIMITS, Captured, Limits, capture, run_ffmpeg

PROGRAMS = ("ffmpeg", "ffprobe")

# Told the fraction of a command (or of a longer piece of work) done so far, 0..1.
Progress = Callable[[float], None]


def progress_share(on_progress: Progress | None, start: float, span: float) -> Progress | None:
    """A callback reporting a piece of work as the share `start`..`start + span` of
    `on_progress`'s."""
    if on_progress is None:
        return None
    return lambda fraction: on_progress(min(1.0, start + span * fraction))


@dataclass(frozen=True)
class FFmpeg:
    """The FFmpeg and FFprobe binaries, the `limits` every process runs under, the default
    `timeout_s` of one command (None: none), and `stop`: setting it kills the running
    command, which raises `runner.Stopped`."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    limits: Limits = DEFAULT_LIMITS
    timeout_s: float | None = None
    stop: threading.Event | None = None

    def stopped_by(self, stop: threading.Event) -> FFmpeg:
        """The same runner, whose commands `stop` kills."""
        return replace(self, stop=stop)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` with this runner's binary in place of the program it names."""
        if argv and argv[0] in PROGRAMS:
            return [getattr(self, argv[0]), *argv[1:]]
        return list(argv)

    def run(
        self,
        argv: list[str],
        *,
        duration_s: float | None = None,
        on_progress: Progress | None = None,
        timeout_s: float | None = None,
    ) -> int | None:
        """Run an FFmpeg command to completion (`runner.run_ffmpeg`: progress, errors that
        keep FFmpeg's stderr); `timeout_s` replaces the runner's for this command."""
        return run_ffmpeg(
            self.command(argv),
            duration_s=duration_s,
            on_progress=on_progress,
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
            limits=self.limits,
            stop=self.stop,
        )

    def capture(self, argv: list[str], *, timeout_s: float) -> Captured:
        """Run a command that answers on stdout or stderr (`runner.capture`): its output
        whole, within `timeout_s`."""
        return capture(self.command(argv), timeout_s=timeout_s, limits=self.limits, stop=self.stop)


DEFAULT_FFMPEG = FFmpeg()
