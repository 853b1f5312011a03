"""The `export-pipeline` command (also `python -m export_pipeline`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

from export_pipeline.cli.watch import duration_text, time_left, watch
from export_pipeline.defs.settings import Settings
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.formats import DEFAULT_FORMAT, FORMATS
from export_pipeline.domain.request import parse_request
from export_pipeline.domain.target import ASPECT_RATIOS, QUALITIES, RESOLUTIONS
from export_pipeline.domain.values import decode_json
from export_pipeline.io.appdb.store import RequestStore, for_display


def _clip_arg(value: str) -> dict:
    """`URL` or `URL,TRIM_START` or `URL,TRIM_START,DURATION`."""
    url, *rest = value.rsplit(",", 2) if value.count(",") else (value,)
    clip: dict = {"url": url}
    try:
        if rest:
            clip["trim_start"] = float(rest[0])
        if len(rest) > 1:
            clip["duration"] = float(rest[1])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--clip {value!r}: {exc}") from exc
    return clip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export-pipeline", description="Server-side video export on Dagster."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="app database commands")
    db.add_subparsers(dest="db_command", required=True).add_parser(
        "init", help="create the export_requests table (idempotent)"
    )

    request = commands.add_parser("request", help="enqueue an export request; prints its id")
    request.add_argument("--project-id", required=True)
    request.add_argument("--user-id", required=True)
    request.add_argument("--resolution", default="1080p", help=", ".join(RESOLUTIONS))
    request.add_argument("--aspect-ratio", default="16:9", help=", ".join(ASPECT_RATIOS))
    request.add_argument("--quality", default="high", help=", ".join(QUALITIES))
    request.add_argument("--format", default=DEFAULT_FORMAT, help=", ".join(FORMATS))
    source = request.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--clip",
        action="append",
        type=_clip_arg,
        metavar="URL[,TRIM_START[,DURATION]]",
        help="a clip, in playing order (repeat the option)",
    )
    source.add_argument(
        "--clips-json", type=Path, help="a JSON file with the clips array of the contract"
    )

    status = commands.add_parser("status", help="print an export request as JSON")
    status.add_argument("id", type=int)

    watch = commands.add_parser(
        "watch", help="follow an export: a live progress line until it ends (exit 0: complete)"
    )
    watch.add_argument("id", type=int)
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between looks")

    commands.add_parser("demo", help="run one export end to end on the embedded defaults")

    listing = commands.add_parser("list", help="list export requests, newest first")
    listing.add_argument("--status")
    listing.add_argument("--user-id")
    listing.add_argument("--project-id")
    listing.add_argument("--since", type=_age, help="only newer than this age: 30m, 6h, 7d")
    listing.add_argument("--limit", type=int, default=50)

    for name, text in (
        ("cancel", "ask to cancel an export (as the app does)"),
        ("retry", "re-queue a failed, canceled or rejected export"),
        ("reexport", "export an old request again as a new request (e.g. after it expired)"),
    ):
        commands.add_parser(name, help=text).add_argument("id", type=int)

    commands.add_parser("metrics", help="the KPIs of the last 24 hours")
    return parser


def _age(value: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    try:
        return timedelta(**{units[value[-1]]: float(value[:-1])})
    except (KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: use a number and m, h or d (6h)") from exc


def _table(rows: list[dict]) -> str:
    head = (
        "id", "status", "progress", "eta", "queue", "user_id", "project_id", "created_at",
        "error/url",
    )  # fmt: skip
    lines = ["\t".join(head)]
    now = utcnow()
    for r in rows:
        detail = r.get("error_message") or r.get("video_url") or ""
        eta = duration_text(time_left(r, now)) if r["status"] in st.ACTIVE else "-"
        queue = f"#{r['queue_position']}" if r.get("queue_position") is not None else "-"
        lines.append(
            "\t".join(
                str(v)
                for v in (
                    r["id"], r["status"], f"{r['progress']}%", eta, queue, r["user_id"],
                    r["project_id"], r["created_at"], detail[:120],
                )
            )
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()

    if args.command == "demo":
        from export_pipeline.cli.demo import run_demo  # imports Dagster definitions: keep lazy

        row = run_demo(settings)
        return 0 if row.get("status") == "complete" else 1

    if settings.db_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    store = RequestStore.from_url(settings.db_url)
    store.create_schema()  # idempotent; spares a first `status` a confusing "no such table"

    if args.command == "db":
        print(f"export_requests is ready ({store.engine.url.render_as_string(hide_password=True)})")
        return 0

    if args.command == "request":
        if args.clips_json:
            try:
                clips = decode_json(args.clips_json.read_text())
            except (OSError, ValueError) as exc:
                print(f"error: --clips-json {args.clips_json}: {exc}", file=sys.stderr)
                return 2
        else:
            clips = [{**c, "scene_number": n} for n, c in enumerate(args.clip, start=1)]
        fields = dict(
            project_id=args.project_id,
            user_id=args.user_id,
            resolution=args.resolution,
            aspect_ratio=args.aspect_ratio,
            quality=args.quality,
            clips=clips,
            format=args.format,
        )
        try:
            parse_request(fields)
        except InvalidRequest as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(store.insert(**fields))
        return 0

    if args.command in ("status", "cancel", "reexport", "watch"):
        row = store.get(args.id)
        if row is None:
            print(f"error: no export request with id {args.id}", file=sys.stderr)
            return 1

    if args.command == "watch":
        try:
            return watch(store, args.id, sys.stdout, interval_s=args.interval)
        except KeyboardInterrupt:
            print(file=sys.stdout)
            return 130

    if args.command == "list":
        since = utcnow() - args.since if args.since else None
        rows = store.list(
            status=args.status,
            user_id=args.user_id,
            project_id=args.project_id,
            since=since,
            limit=args.limit,
        )
        print(_table(rows))
        return 0

    if args.command == "cancel":
        if row["status"] in st.TERMINAL:
            print(f"error: export {args.id} is already {row['status']}", file=sys.stderr)
            return 1
        store.request_cancel(args.id)
        print(f"cancel requested for export {args.id}; the pipeline stops it within seconds")
        return 0

    if args.command == "retry":
        if not store.requeue(args.id):
            row = store.get(args.id)
            state = row["status"] if row else "missing"
            print(
                f"error: export {args.id} is {state}; only failed, canceled or rejected exports "
                "can be retried (use reexport for expired or complete ones)",
                file=sys.stderr,
            )
            return 1
        print(f"export {args.id} is pending again; the sensor queues it within seconds")
        return 0

    if args.command == "reexport":
        try:
            spec = parse_request(row)
        except InvalidRequest as exc:
            print(f"error: export {args.id} cannot be exported again: {exc}", file=sys.stderr)
            return 2
        print(
            store.insert(
                project_id=spec.project_id,
                user_id=spec.user_id,
                resolution=spec.resolution,
                aspect_ratio=spec.aspect_ratio,
                quality=spec.quality,
                clips=decode_json(row["clips"]),
                retention_days=spec.retention_days,  # the same plan
            )
        )
        return 0

    if args.command == "metrics":
        from export_pipeline.definitions import build_resources
        from export_pipeline.defs.operations.metrics import metrics_table

        print(metrics_table(store, build_resources(settings)["storage"]))
        return 0

    if args.command == "status":
        print(json.dumps(for_display(row), indent=2, default=str))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
