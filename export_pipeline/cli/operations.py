"""`export-pipeline db init | metrics | demo`: what an operator runs."""

from __future__ import annotations

import argparse

from export_pipeline.cli.session import Session


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
