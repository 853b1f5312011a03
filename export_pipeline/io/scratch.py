"""Scratch directories of steps: each step works in `<work dir>/export-exp-<id>-<step>-*`
and removes it when it ends; `sweep_temp` removes the ones whose worker died before it
could (the daily `temp_sweep_job`). Only our prefix is touched, even in a dedicated work
directory, so pointing EXPORT_WORK_DIR at /tmp stays safe."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMP_PREFIXES = ("export-exp-",)  # MediaTools.temp_dir(f"export-{partition_key}-<step>")
TEMP_MAX_AGE_HOURS = 24.0


@dataclass
class TempSweepReport:
    dry_run: bool
    base: Path
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    bytes_freed: int = 0

    def metadata(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "work_dir": str(self.base),
            "entries_removed": len(self.removed),
            "entries_kept": self.kept,
            "bytes_freed": self.bytes_freed,
            "removed": self.removed[:1000],
        }


def _newest_and_size(path: Path) -> tuple[float, int]:
    """Newest mtime and total size of `path` and everything under it (links not followed)."""
    stat = path.lstat()
    is_dir = path.is_dir() and not path.is_symlink()
    newest, size = stat.st_mtime, 0 if is_dir else stat.st_size
    if is_dir:
        for directory, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    inner = os.lstat(os.path.join(directory, name))
                    newest = max(newest, inner.st_mtime)
                    size += inner.st_size if name in files else 0
    return newest, size


def sweep_temp(
    base: Path,
    max_age_hours: float = TEMP_MAX_AGE_HOURS,
    *,
    prefixes: tuple[str, ...] = TEMP_PREFIXES,
    now: float | None = None,
    dry_run: bool = False,
) -> TempSweepReport:
    """Remove entries of `base` named with one of `prefixes` whose newest file is older
    than `max_age_hours`. Steps delete their own directories; these are leftovers."""
    report = TempSweepReport(dry_run=dry_run, base=base)
    if not base.is_dir():
        return report
    cutoff = (time.time() if now is None else now) - max_age_hours * 3600
    for entry in sorted(base.iterdir()):
        if not entry.name.startswith(prefixes):
            continue
        try:
            newest, size = _newest_and_size(entry)
        except FileNotFoundError:
            continue  # its step removed it meanwhile
        if newest >= cutoff:
            report.kept += 1
            continue
        if not dry_run:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        report.removed.append(entry.name)
        report.bytes_freed += size
    return report
