"""`export-pipeline request | status | watch | list | cancel | retry | reexport`: what the
app does with the `export_requests` table, from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export_pipeline.cli.args import age, error
from export_pipeline.cli.session import Session
from export_pipeline.cli.watch import duration_text, time_left, watch
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


def register(commands: argparse._SubParsersAction) -> None:
    register_request(commands)
    status = commands.add_parser("status", help="print an export request as JSON")
    status.add_argument("id", type=int)
    status.set_defaults(run=run_status)

    follow = commands.add_parser(
        "watch", help="follow an export: a live progress line until it ends (exit 0: complete)"
    )
    follow.add_argument("id", type=int)
    follow.add_argument("--interval", type=float, default=1.0, help="seconds between looks")
    follow.set_defaults(run=run_watch)

    listing = commands.add_parser("list", help="list export requests, newest first")
    listing.add_argument("--status", choices=st.STATUSES)
    listing.add_argument("--user-id")
    listing.add_argument("--project-id")
    listing.add_argument("--since", type=age, help="only newer than this age: 30m, 6h, 7d")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=run_list)

    for name, text, run in (
        ("cancel", "ask to cancel an export (as the app does)", run_cancel),
        ("retry", "re-queue a failed, canceled or rejected export", run_retry),
        ("reexport", "export an old request again as a new request (e.g. after it expired)",
         run_reexport),
    ):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("id", type=int)
        command.set_defaults(run=run)


def register_request(commands: argparse._SubParsersAction) -> None:
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
    register_finishing(request)
    request.add_argument(
        "--retention-days", type=int, help="days the video is kept (the user's plan)"
    )
    request.add_argument(
        "--notify-email", metavar="ADDRESS", help="email the creator the outcome (README, Email)"
    )
    request.set_defaults(run=run_request)


def register_finishing(request: argparse.ArgumentParser) -> None:
    finishing = request.add_argument_group("finishing (README, the contract)")
    finishing.add_argument(
        "--captions", type=Path, metavar="FILE", help="captions file (.srt or .vtt), burned in"
    )
    finishing.add_argument("--captions-url", metavar="URL", help="captions fetched from a URL")
    finishing.add_argument(
        "--soft-captions", action="store_true", help="a caption track instead of burned in"
    )
    finishing.add_argument("--soundtrack", metavar="URL", help="music under the video")
    finishing.add_argument("--soundtrack-volume", type=float, metavar="0-1")
    finishing.add_argument("--soundtrack-fade-in", type=float, metavar="SECONDS")
    finishing.add_argument("--soundtrack-fade-out", type=float, metavar="SECONDS")
    finishing.add_argument(
        "--soundtrack-once", action="store_true", help="play the music once (default: loop)"
    )
    finishing.add_argument(
        "--no-audio-normalize", action="store_true", help="keep each clip's own loudness"
    )


def _existing(store: RequestStore, request_id: int) -> dict | None:
    row = store.get(request_id)
    if row is None:
        error(f"no export request with id {request_id}")
    return row


def _finishing(args: argparse.Namespace) -> dict:
    """The request's optional columns from the options: captions, soundtrack, loudness."""
    fields: dict = {}
    if args.captions or args.captions_url:
        if args.captions and args.captions_url:
            raise ValueError("--captions and --captions-url: one or the other")
        if args.captions:
            kind = args.captions.suffix.lower().lstrip(".")
            if kind not in ("srt", "vtt"):
                raise ValueError(f"--captions {args.captions}: an .srt or .vtt file")
            captions = {kind: args.captions.read_text(encoding="utf-8-sig")}
        else:
            captions = {"url": args.captions_url}
        fields["captions"] = {**captions, "burn_in": not args.soft_captions}
    if args.soundtrack:
        options = {
            "volume": args.soundtrack_volume,
            "fade_in": args.soundtrack_fade_in,
            "fade_out": args.soundtrack_fade_out,
            "loop": False if args.soundtrack_once else None,
        }
        given = {key: value for key, value in options.items() if value is not None}
        fields["soundtrack"] = {"url": args.soundtrack, **given}
    if args.no_audio_normalize:
        fields["audio_normalize"] = False
    return fields


def run_request(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    if args.clips_json:
        try:
            clips = decode_json(args.clips_json.read_text())
        except (OSError, ValueError) as exc:
            return error(f"--clips-json {args.clips_json}: {exc}", 2)
    else:
        clips = [{**c, "scene_number": n} for n, c in enumerate(args.clip, start=1)]
    try:
        finishing = _finishing(args)
    except (OSError, ValueError) as exc:
        return error(str(exc), 2)
    fields = dict(
        project_id=args.project_id,
        user_id=args.user_id,
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        quality=args.quality,
        clips=clips,
        format=args.format,
        retention_days=args.retention_days,
        notify_email=args.notify_email,
        **finishing,
    )
    try:
        parse_request(fields)
    except InvalidRequest as exc:
        return error(str(exc), 2)
    print(store.insert(**fields))
    return 0


def run_status(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    row = _existing(store, args.id)
    if row is None:
        return 1
    print(json.dumps(for_display(row), indent=2, default=str))
    return 0


def run_watch(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    if _existing(store, args.id) is None:
        return 1
    try:
        return watch(store, args.id, sys.stdout, interval_s=args.interval)
    except KeyboardInterrupt:
        print(file=sys.stdout)
        return 130


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
        cells = (
            r["id"], r["status"], f"{r['progress']}%", eta, queue, r["user_id"],
            r["project_id"], r["created_at"], detail[:120],
        )  # fmt: skip
        lines.append("\t".join(str(v) for v in cells))
    return "\n".join(lines)


def run_list(args: argparse.Namespace, session: Session) -> int:
    store = session.store
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


def run_cancel(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    row = _existing(store, args.id)
    if row is None:
        return 1
    if row["status"] in st.TERMINAL:
        return error(f"export {args.id} is already {row['status']}")
    store.request_cancel(args.id)
    print(f"cancel requested for export {args.id}; the pipeline stops it within seconds")
    return 0


def run_retry(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    if not store.requeue(args.id):
        row = store.get(args.id)
        state = row["status"] if row else "missing"
        return error(
            f"export {args.id} is {state}; only failed, canceled or rejected exports can be "
            "retried (use reexport for expired or complete ones)"
        )
    print(f"export {args.id} is pending again; the sensor queues it within seconds")
    return 0


def run_reexport(args: argparse.Namespace, session: Session) -> int:
    store = session.store
    row = _existing(store, args.id)
    if row is None:
        return 1
    try:
        parse_request(row)
    except InvalidRequest as exc:
        return error(f"export {args.id} cannot be exported again: {exc}", 2)
    print(store.reexport(args.id))
    return 0
