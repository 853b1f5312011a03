"""`export-pipeline watch ID`: one export's progress as a live line in the terminal.

On a terminal the line is redrawn in place (and the time left counts down from
`estimated_finish_at` between the pipeline's writes); otherwise (a pipe, a log file) a line
is printed each time what it says changes. It ends when the export does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.io.appdb.store import RequestStore

BAR_WIDTH = 24


def duration_text(seconds: int | None) -> str:
    """`42s`, `3m05s`, `1h02m`; `?` when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def time_left(row: dict[str, Any], now: datetime | None = None) -> int | None:
    """Seconds left: counted down from `estimated_finish_at` when `now` is given, else the
    row's `eta_s` as last written."""
    finish = row.get("estimated_finish_at")
    if now is not None and finish is not None:
        return max(0, round((as_utc(finish) - now).total_seconds()))
    return row.get("eta_s")


def render(row: dict[str, Any], now: datetime | None = None) -> str:
    """`exp-7 processing [#########...............]  40%  ETA 1m05s`, with the place in the
    queue while queued, and the outcome once finished."""
    progress = max(0, min(100, int(row.get("progress") or 0)))
    filled = BAR_WIDTH * progress // 100
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    parts = [f"exp-{row['id']} {row['status']:<10} [{bar}] {progress:3d}%"]
    status = row["status"]
    if status == st.QUEUED and row.get("queue_position") is not None:
        parts.append(f"#{row['queue_position']} in queue ({row.get('queue_reason')})")
    if status in st.ACTIVE:
        parts.append(f"ETA {duration_text(time_left(row, now))}")
    if status == st.COMPLETE and row.get("video_url"):
        parts.append(row["video_url"])
    elif status in st.TERMINAL and row.get("error_message"):
        parts.append(str(row["error_message"])[:200])
    return "  ".join(parts)


def watch(
    store: RequestStore,
    request_id: int,
    out: TextIO,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow the export until it ends: 0 if complete, 1 otherwise (failed, canceled, ...,
    or no such export)."""
    tty = out.isatty()
    shown = None
    while True:
        row = store.get(request_id)
        if row is None:
            out.write(f"error: no export request with id {request_id}\n")
            return 1
        line = render(row, utcnow() if tty else None)
        done = row["status"] in st.TERMINAL
        if tty:
            # \r and "erase to the end of the line": redraw in place
            out.write(f"\r{line}\x1b[K" + ("\n" if done else ""))
        elif line != shown:
            out.write(line + "\n")
        shown = line
        out.flush()
        if done:
            return 0 if row["status"] == st.COMPLETE else 1
        sleep(interval_s)
