"""The CPUs this worker really gets: those it may run on, bounded by its container's quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

# (quota, period) files: cgroup v2 holds both in one.
_CGROUP_CPU_FILES = (
    ("/sys/fs/cgroup/cpu.max", ""),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def available_cpus() -> int:
    """CPUs this process can really use: those it may run on, bounded by its cgroup's CPU
    quota. A container limited to 2 CPUs on a 32-core host sees 32, and FFmpeg would start
    threads (and allocate their frames) for all of them."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time per period allowed by cgroup v2 (`cpu.max`) or v1 (CFS quota)."""
    for quota_file, period_file in _CGROUP_CPU_FILES:
        try:
            quota, *rest = Path(quota_file).read_text().split()
            period = rest[0] if rest else Path(period_file).read_text().strip()
            if quota not in ("max", "-1") and int(period) > 0:
                return int(quota) / int(period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def encoder_threads() -> int:
    """x264's own rule (1.5 threads per CPU) applied to the CPUs this worker really gets."""
    return math.ceil(available_cpus() * 3 / 2)
