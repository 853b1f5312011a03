"""What an alert says: the story of a failed KPI check (its causes, examples, links into the
Dagster UI) or of a run that failed for good, whatever the channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from export_pipeline.defs.channels import Alert
from export_pipeline.defs.dagster_internals import (
    PARTITION_NAME_TAG,
    RETRY_NUMBER_TAG,
)
from export_pipeline.defs.operations.metrics import (
    ASSET_NAME,
    QUOTA_CHECK_NAME,
    SPEED_CHECK_NAME,
    SUCCESS_CHECK_NAME,
)
from export_pipeline.defs.operations.usage import KINDS
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc
from export_pipeline.domain.failures import CAUSES, FailureCause, cause_of_row
from export_pipeline.domain.kpis import EXPORT_1080P_1MIN_TARGET_S, is_1080p_one_minute
from export_pipeline.domain.values import human_bytes

EXAMPLES = 5  # request ids named in one message


class Links:
    """Links into the Dagster UI; without a base URL, none (ids are named in the text)."""

    def __init__(self, base_url: str | None):
        self.base = (base_url or "").rstrip("/")

    def run(self, run_id: str) -> str | None:
        return f"{self.base}/runs/{run_id}" if self.base and run_id else None

    def checks(self) -> str | None:
        return f"{self.base}/assets/{quote(ASSET_NAME)}?view=checks" if self.base else None

    def partition(self, key: str) -> str | None:
        return (
            f"{self.base}/runs?q%5B0%5D=tag%3Adagster%2Fpartition%3D{quote(key)}"
            if self.base
            else None
        )


def request_label(row: Mapping[str, Any], links: Links, extra: str = "") -> str:
    run_id = row.get("run_id") or ""
    label = f"exp-{row['id']}"
    parts = [extra] if extra else []
    if run_id:
        href = links.run(run_id)
        parts.append(f"<{href}|run {run_id[:8]}>" if href else f"run {run_id[:8]}")
    return f"{label} ({', '.join(parts)})" if parts else label


def _causes(metadata: Mapping[str, Any]) -> dict[str, int]:
    counts = {cause: metadata.get(f"failures_{cause}") for cause in CAUSES}
    return {cause: int(n) for cause, n in counts.items() if isinstance(n, int | float) and n}


Story = tuple[str, list[str], list[Mapping[str, Any]], list[str]]  # title, lines, rows, labels


def _success_story(metadata: Mapping[str, Any], rows, links: Links) -> Story:
    causes = _causes(metadata)
    cause_text = ", ".join(f"{c} {n}" for c, n in sorted(causes.items(), key=lambda i: -i[1]))
    chosen = [r for r in rows if r.get("status") == st.FAILED][:EXAMPLES]
    lines = [f"Failures by cause (last 24 h): {cause_text or 'none recorded'}"]
    examples = [request_label(r, links, cause_of_row(r)) for r in chosen]
    return "Export success rate below target", lines, chosen, examples


def _quota_story(metadata: Mapping[str, Any], rows, links: Links) -> Story:
    kinds = sorted(
        ((kind, n) for kind in KINDS if (n := metadata.get(f"storage_{kind}_bytes"))),
        key=lambda item: -item[1],
    )
    lines = ["By kind: " + ", ".join(f"{k} {human_bytes(n)}" for k, n in kinds)]
    users = metadata.get("storage_top_users") or []
    if users:
        lines.append("Top users: " + ", ".join(
            f"{u['user_id']} {human_bytes(u['bytes'])} ({u['exports']} exports)"
            for u in users[:EXAMPLES]))  # fmt: skip
    return "Storage nearly full", lines, [], []


def _speed_story(metadata: Mapping[str, Any], rows, links: Links) -> Story:
    slow = sorted(
        (
            (seconds, r)
            for r in rows
            if r.get("status") == st.COMPLETE and is_1080p_one_minute(r)
            and (seconds := _took(r)) is not None and seconds > EXPORT_1080P_1MIN_TARGET_S
        ),
        key=lambda item: -item[0],
    )  # fmt: skip
    lines = []
    queue = metadata.get("queue_wait_p95_s")
    if queue is not None:
        lines.append(f"Queue wait p95: {queue:.1f} s; export time p95 (all): "
                     f"{metadata.get('export_time_p95_s') or 'n/a'} s")  # fmt: skip
    causes = _causes(metadata)
    if causes:
        lines.append("Failures by cause (last 24 h): "
                     + ", ".join(f"{c} {n}" for c, n in causes.items()))  # fmt: skip
    chosen = [r for _, r in slow[:EXAMPLES]]
    examples = [request_label(r, links, f"{s:.0f} s") for s, r in slow[:EXAMPLES]]
    return "1-minute 1080p exports slower than target", lines, chosen, examples


STORIES = {
    SUCCESS_CHECK_NAME: _success_story,
    QUOTA_CHECK_NAME: _quota_story,
    SPEED_CHECK_NAME: _speed_story,
}


def check_alert(
    check_name: str,
    evaluation: Any,
    check_run_id: str,
    metadata: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    links: Links,
) -> Alert:
    """The alert for a failed KPI check. `metadata`: the latest `export_metrics` values;
    `rows`: requests of the window (the app database), for examples."""
    title, lines, chosen, examples = STORIES[check_name](metadata, rows, links)
    if examples:
        lines.append("Requests: " + "; ".join(examples))
    alert_links = [(text, href) for text, href in (("Checks in Dagster", links.checks()),
                   ("Check run", links.run(check_run_id))) if href]  # fmt: skip
    details = {
        "check": check_name,
        "asset": ASSET_NAME,
        "check_run_id": check_run_id,
        "failures_by_cause": _causes(metadata),
        "request_ids": [int(r["id"]) for r in chosen],
        **{k: v for k, v in plain_values(evaluation.metadata).items() if _plain(v)},
    }
    summary = evaluation.description or f"{check_name} failed"
    return Alert(title, summary, "warning", ASSET_NAME, "kpi_check", lines, alert_links, details)


def plain_values(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Dagster metadata as plain values."""
    return {k: getattr(v, "value", v) for k, v in (metadata or {}).items()}


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _took(row: Mapping[str, Any]) -> float | None:
    end, start = row.get("completed_at"), row.get("processing_started_at")
    return None if end is None or start is None else (as_utc(end) - as_utc(start)).total_seconds()


def run_alert(run: Any, failure_message: str, row: Mapping[str, Any] | None, links: Links) -> Alert:
    """The alert for a run of `run.job_name` that failed for good."""
    attempt = int(run.tags.get(RETRY_NUMBER_TAG, "0")) + 1
    partition = run.tags.get(PARTITION_NAME_TAG)
    reason = (row or {}).get("error_message") or failure_message
    cause = cause_of_row(row) if row else FailureCause.OTHER
    what = f"exp-{row['id']}" if row else (partition or run.job_name)
    title = f"{run.job_name} run failed for good"
    summary = f"{what}: {cause}" + (f" (run attempt {attempt})" if attempt > 1 else "")
    lines = [f"Cause: {cause}: {reason[:500]}"]
    if row:
        lines.append(
            f"Request: {request_label({**row, 'run_id': run.run_id}, links)}, user "
            f"{row.get('user_id')}, project {row.get('project_id')}"
        )
    else:
        href = links.run(run.run_id)
        lines.append(f"Run: <{href}|{run.run_id}>" if href else f"Run: {run.run_id}")
    alert_links = [(t, h) for t, h in (("Run in Dagster", links.run(run.run_id)),) if h]
    details = {
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": partition,
        "request_ids": [int(row["id"])] if row else [],
        "cause": cause,
        "attempt": attempt,
    }
    return Alert(title, summary, "error", run.job_name, "run_failure", lines, alert_links, details)
