"""`export-pipeline db init | metrics | demo`: what an operator runs."""

from __future__ import annotations

import argparse

from export_pipeline.cli.args import age, error, request_ids
from export_pipeline.cli.session import Session
from export_pipeline.defs.settings import Settings, declared
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow


def register(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser("db", help="app database commands")
    db.add_subparsers(dest="db_command", required=True).add_parser(
        "init", help="create the export_requests table (idempotent)"
    ).set_defaults(run=run_db_init)
    commands.add_parser("metrics", help="the KPIs of the last 24 hours").set_defaults(
        run=run_metrics
    )
    commands.add_parser(
        "demo", help="run one export end to end on the embedded defaults"
    ).set_defaults(run=run_demo)

    backfill = commands.add_parser(
        "backfill", help="export finished requests again, through the pipeline (re-exports)"
    )
    backfill.add_argument("--ids", type=request_ids, help="request ids: 4,5,9")
    backfill.add_argument("--since", type=age, help="created within: 30m, 6h, 7d")
    backfill.add_argument("--project-id")
    backfill.add_argument("--user-id")
    backfill.add_argument(
        "--status",
        action="append",
        choices=sorted(st.BACKFILLABLE),
        help="only requests in this status (repeat; default: every finished one)",
    )
    backfill.add_argument("--dry-run", action="store_true", help="list them; change nothing")
    backfill.set_defaults(run=run_backfill)

    sweep = commands.add_parser(
        "sweep", help="retention now: delete exports past their expires_at, and stale scratch"
    )
    sweep.add_argument("--dry-run", action="store_true", help="report; delete nothing")
    sweep.set_defaults(run=run_sweep)
    register_settings(commands)


def run_db_init(args: argparse.Namespace, session: Session) -> int:
    url = session.store.engine.url.render_as_string(hide_password=True)
    print(f"export_requests is ready ({url})")
    return 0


def run_metrics(args: argparse.Namespace, session: Session) -> int:
    from export_pipeline.defs.operations.metrics import metrics_table  # imports Dagster

    print(metrics_table(session.store, session.settings.storage))
    return 0


def run_demo(args: argparse.Namespace, session: Session) -> int:
    from export_pipeline.cli.demo import run_demo as demo  # imports Dagster definitions

    row = demo(session.settings)
    return 0 if row.get("status") == "complete" else 1


def run_backfill(args: argparse.Namespace, session: Session) -> int:
    """Put the selected finished requests back in line: the intake sensor takes them again
    (its daemon: `dagster dev` here, the daemon container in production), each in its own
    partition, behind the same queue limits; `requeued_at` lets them past the daily limit."""
    if not (args.ids or args.since or args.project_id or args.user_id):
        return error("say which requests: --ids, --since, --project-id or --user-id", 2)
    statuses = set(args.status or st.BACKFILLABLE)
    rows = session.store.list(
        ids=args.ids,
        since=utcnow() - args.since if args.since else None,
        project_id=args.project_id,
        user_id=args.user_id,
        statuses=statuses,
        limit=None,
    )
    if args.dry_run:
        print(f"would export again {len(rows)} request(s): {_listed(rows)}")
        return 0
    queued = [r for r in rows if session.store.requeue(int(r["id"]), statuses)]
    print(f"{len(queued)} request(s) pending again: {_listed(queued)}; the sensor queues "
          "them within seconds (while `dagster dev` or the daemon runs)")  # fmt: skip
    return 0


def _listed(rows: list[dict]) -> str:
    ids = sorted(int(r["id"]) for r in rows)
    return ", ".join(map(str, ids[:50])) + (" ..." if len(ids) > 50 else "") if ids else "none"


def run_sweep(args: argparse.Namespace, session: Session) -> int:
    """What the daily retention and scratch jobs do, now, in this process, on the same
    Dagster instance (DAGSTER_HOME, or the embedded one) and storage."""
    from export_pipeline.defs.operations.retention import work_dir
    from export_pipeline.defs.operations.sweep import sweep_expired
    from export_pipeline.io.scratch import sweep_temp

    settings = session.settings
    report = sweep_expired(
        session.store,
        settings.storage.open(),
        session.instance(),
        settings.retention.days,
        dry_run=args.dry_run,
    )
    print(report.summary())
    scratch = sweep_temp(
        work_dir(settings.media), settings.retention.temp_max_age_hours, dry_run=args.dry_run
    )
    verb = "would remove" if args.dry_run else "removed"
    print(f"scratch ({scratch.base}): {verb} {len(scratch.removed)}, kept {scratch.kept}")
    return 0


def register_settings(commands: argparse._SubParsersAction) -> None:
    show = commands.add_parser(
        "settings", help="every setting as this process reads it (secrets hidden)"
    )
    show.add_argument(
        "--markdown", action="store_true", help="README's configuration table (defaults)"
    )
    show.set_defaults(run=run_settings)


def run_settings(args: argparse.Namespace, session: Session) -> int:
    print(settings_table() if args.markdown else settings_values(session.settings))
    return 0


def shown_default(default: object) -> str:
    if default is None:
        return "unset"
    if default == "" or default == []:
        return "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def settings_table() -> str:
    """README's configuration table, from the settings as declared (`defs.config.setting`)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for item in declared():
        names = " or ".join(f"`{name}`" for name in (item.env, *item.aliases))
        meaning = item.doc.replace("|", "\\|")
        lines.append(f"| {names} | {shown_default(item.default)} | {meaning} |")
    return "\n".join(lines)


def settings_values(settings: Settings) -> str:
    """Each setting as this process reads it, `VARIABLE=value`, secrets shown as (set)."""
    rows = []
    for item in declared():
        value = settings.value(item)
        if item.secret and value:
            value = "(set)"
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        rows.append(f"{item.env}={'' if value is None else value}")
    return "\n".join(rows)
