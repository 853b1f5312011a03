"""What the commands' options and messages share."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta


def age(value: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    try:
        return timedelta(**{units[value[-1]]: float(value[:-1])})
    except (KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: use a number and m, h or d (6h)") from exc


def request_ids(value: str) -> list[int]:
    """`4,5,9`."""
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: request ids separated by commas") from exc


def error(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
