"""Reading untrusted values from a request: numbers, and how a value is shown in a message.
A row may hold anything (megabytes of text, NaN, an int too large for a float)."""

from __future__ import annotations

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
