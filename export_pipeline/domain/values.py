"""Reading untrusted values from a request: numbers, and how a value is shown in a message.
A row may hold anything (megabytes of text, NaN, an int too large for a float)."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (bool included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # an int too large for a float raises OverflowError
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def shown(value: Any, limit: int = 80) -> str:
    """A value quoted for a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_json(raw: Any) -> Any:
    """Decode a JSON column (`clips`, `soundtrack`, `captions`) as read by `RequestStore`
    (text), tolerating drivers that already decoded it. Raises ValueError on malformed JSON,
    including JSON nested too deeply for the decoder (RecursionError, which every reader
    would otherwise have to know)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except RecursionError:
            raise ValueError("nested too deeply") from None
    return raw


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
