"""Export KPIs: the maths over the request rows of a window, and how they are shown.

The product doc's targets: export success rate > 95 %, retry success rate > 80 %, a
1-minute 1080p export in under 90 s. `compute_metrics` is a pure function of the rows of
the window (by `created_at`) and the bytes in storage; `defs.operations.metrics` feeds it
(the `export_metrics` asset, its checks) and the CLI prints `render_text`. A KPI that is
undefined for the window (a rate with nothing finished, a time with no export) is `None`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc
from export_pipeline.domain.failures import CAUSES, cause_of_row
from export_pipeline.domain.values import human_bytes

DEFAULT_WINDOW = timedelta(hours=24)
SUCCESS_RATE_TARGET = 0.95
RETRY_SUCCESS_RATE_TARGET = 0.80
EXPORT_1080P_1MIN_TARGET_S = 90.0
# "A 1-minute export": what the product doc's speed KPI is about, with some slack.
ONE_MINUTE_S = (50.0, 70.0)


def _moment(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def reached_a_run(row: dict[str, Any]) -> bool:
    """A failed request that a run worked on (not one refused at intake)."""
    return row.get("status") == st.FAILED and bool(row.get("run_id"))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1), interpolating between closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _seconds(end: datetime | None, start: datetime | None) -> float | None:
    end, start = _moment(end), _moment(start)
    return None if end is None or start is None else (end - start).total_seconds()


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else None,
        "median": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def is_1080p_one_minute(row: dict[str, Any]) -> bool:
    duration = row.get("output_duration_s")
    return (
        row.get("resolution") == "1080p"
        and duration is not None
        and ONE_MINUTE_S[0] <= duration <= ONE_MINUTE_S[1]
    )


def compute_metrics(
    rows: Iterable[dict[str, Any]],
    now: datetime,
    stored_bytes: int | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[str, Any]:
    """The KPIs of the requests created in `[now - window, now]`.

    - success rate: of the requests that reached a run (a row with a `run_id`), the share
      that completed: complete / (complete + failed after a run). Left out: requests refused
      at intake (failed without a run: invalid), rejected (the daily limit), canceled
      (withdrawn by the app) and expired ones (complete before). None when none finished.
    - retry success rate: the same, over those with `retry_count > 0`.
    - export time: `completed_at - processing_started_at` of complete requests (of their
      latest run: a re-export restarts the clock), overall and for 1-minute 1080p exports
      (`resolution` 1080p, `output_duration_s` within `ONE_MINUTE_S`).
    - queue wait: `processing_started_at - queued_at` of requests whose latest run started
      (from when that run was queued: a retry, backfill or re-export is not counted from
      the request's creation).
    - failures by cause: failed, canceled and rejected requests, by their `error_cause`
      (`cause_of_row`).
    - by status: every request of the window, under its status.
    """
    now = as_utc(now)
    since = now - window
    rows = [r for r in rows if since <= (_moment(r.get("created_at")) or now) <= now]
    by_status = dict.fromkeys(st.STATUSES, 0)
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    finished = [r for r in rows if r["status"] == st.COMPLETE or reached_a_run(r)]
    complete = [r for r in rows if r["status"] == st.COMPLETE]
    retried = [r for r in finished if (r.get("retry_count") or 0) > 0]
    retried_complete = sum(1 for r in retried if r["status"] == st.COMPLETE)
    return {
        "now": now,
        "since": since,
        "window_hours": window.total_seconds() / 3600,
        "requests": len(rows),
        "by_status": by_status,
        "finished": len(finished),
        "success_rate": _rate(len(complete), len(finished)),
        "retried": len(retried),
        "retried_complete": retried_complete,
        "retry_success_rate": _rate(retried_complete, len(retried)),
        "export_time_s": _summary(_durations(complete, "processing_started_at", "completed_at")),
        "export_1080p_1min_s": _summary(
            _durations(
                filter(is_1080p_one_minute, complete), "processing_started_at", "completed_at"
            )
        ),
        "queue_wait_s": _summary(_durations(rows, "queued_at", "processing_started_at")),
        "failures_by_cause": _failures(rows),
        "stored_bytes": stored_bytes,
    }


def _durations(rows: Iterable[dict[str, Any]], start: str, end: str) -> list[float]:
    """Seconds from column `start` to column `end` of the rows that have both."""
    spans = (_seconds(row.get(end), row.get(start)) for row in rows)
    return [seconds for seconds in spans if seconds is not None]


def _failures(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Failed, canceled and rejected requests by their cause."""
    failures = dict.fromkeys(CAUSES, 0)
    for row in rows:
        if row["status"] in (st.FAILED, st.CANCELED, st.REJECTED):
            failures[cause_of_row(row)] += 1
    return failures


# ---- presentation


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(100 * rate, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def flat(m: dict[str, Any]) -> dict[str, float | int | None]:
    """Every plotted number under a stable key (rates in percent, times in seconds)."""
    flat: dict[str, float | int | None] = {
        "window_hours": float(m["window_hours"]),
        "requests": m["requests"],
    }
    flat.update({f"status_{status}": m["by_status"].get(status, 0) for status in st.STATUSES})
    flat.update(
        {
            "finished": m["finished"],
            "success_rate_pct": _pct(m["success_rate"]),
            "retried_finished": m["retried"],
            "retry_success_rate_pct": _pct(m["retry_success_rate"]),
        }
    )
    for name, key in (
        ("export_time", "export_time_s"),
        ("export_1080p_1min", "export_1080p_1min_s"),
        ("queue_wait", "queue_wait_s"),
    ):
        summary = m[key]
        flat[f"{name}_count"] = summary["count"]
        for stat in ("mean", "median", "p95"):
            flat[f"{name}_{stat}_s"] = _round(summary[stat])
    flat.update({f"failures_{cause}": m["failures_by_cause"][cause] for cause in CAUSES})
    flat["stored_bytes"] = m["stored_bytes"]
    return flat


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _verdict(value: float | None, ok: bool) -> str:
    return "no data" if value is None else ("ok" if ok else "MISSED")


def kpi_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(KPI, value, target, verdict) rows shared by the markdown and the text table."""
    by_status = m["by_status"]
    success, retry = m["success_rate"], m["retry_success_rate"]
    complete = by_status.get(st.COMPLETE, 0)
    times, one_min, waits = m["export_time_s"], m["export_1080p_1min_s"], m["queue_wait_s"]
    failures = ", ".join(f"{c} {n}" for c, n in m["failures_by_cause"].items() if n) or "none"
    stored = m["stored_bytes"]
    statuses = ", ".join(f"{s} {n}" for s, n in by_status.items() if n) or "none"

    def pct(rate: float | None, part: int, whole: int) -> str:
        return "n/a" if rate is None else f"{100 * rate:.1f} % ({part}/{whole})"

    def spread(summary: dict[str, Any]) -> str:
        if not summary["count"]:
            return "n/a"
        return (
            f"median {_fmt_s(summary['median'])}, p95 {_fmt_s(summary['p95'])}, "
            f"mean {_fmt_s(summary['mean'])} (n={summary['count']})"
        )

    p95 = one_min["p95"]
    return [
        ("requests", f"{m['requests']} ({statuses})", "", ""),
        (
            "success rate (of exports that reached a run)",
            pct(success, complete, m["finished"]),
            f">= {100 * SUCCESS_RATE_TARGET:.0f} %",
            _verdict(success, success is not None and success >= SUCCESS_RATE_TARGET),
        ),
        (
            "retry success rate",
            pct(retry, m["retried_complete"], m["retried"]),
            f">= {100 * RETRY_SUCCESS_RATE_TARGET:.0f} %",
            _verdict(retry, retry is not None and retry >= RETRY_SUCCESS_RATE_TARGET),
        ),
        ("export time", spread(times), "", ""),
        (
            "1-min 1080p export time",
            spread(one_min),
            f"p95 <= {EXPORT_1080P_1MIN_TARGET_S:.0f} s",
            _verdict(p95, p95 is not None and p95 <= EXPORT_1080P_1MIN_TARGET_S),
        ),
        ("queue wait", spread(waits), "", ""),
        ("failures by cause", failures, "", ""),
        ("stored", "n/a" if stored is None else human_bytes(stored), "", ""),
    ]


def _title(m: dict[str, Any]) -> str:
    return (
        f"Exports created in the last {m['window_hours']:g} h "
        f"(since {m['since']:%Y-%m-%d %H:%M} UTC)"
    )


def render_markdown(m: dict[str, Any]) -> str:
    lines = [_title(m), "", "| KPI | value | target | |", "|---|---|---|---|"]
    lines += [f"| {k} | {v} | {t} | {ok} |" for k, v, t, ok in kpi_rows(m)]
    return "\n".join(lines)


def render_text(m: dict[str, Any]) -> str:
    rows = [("KPI", "value", "target", ""), *kpi_rows(m)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [_title(m)]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)
