"""The `export-pipeline` command (also `python -m export_pipeline`): one module per group
of verbs (`requests`, `operations`), each registering its subcommands with the function
that runs them."""

from __future__ import annotations

import argparse
import sys

from export_pipeline.cli import operations, requests
from export_pipeline.cli.session import Session
from export_pipeline.defs.settings import Settings

GROUPS = (requests, operations)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export-pipeline", description="Server-side video export on Dagster."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args, Session(Settings.from_env()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
