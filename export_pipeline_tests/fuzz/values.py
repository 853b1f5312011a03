"""Fuzz bytes -> the odd values real inputs hold: wrong types, huge and non-finite numbers,
control characters, lone surrogates, deep nesting.

`FuzzedDataProvider` takes integers from the end of the input and strings and bytes from the
front, so an input is "text up front, choices at the back" (the seeds rely on that).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from export_pipeline_tests.fuzz.provider import BytesProvider

try:  # atheris's own, native reader under the fuzzer; the same values in plain Python elsewhere
    from atheris import FuzzedDataProvider as Provider
except ImportError:
    Provider = BytesProvider  # type: ignore[assignment,misc]

MAX_DEPTH = 4

NUMBERS: list[Any] = [
    0,
    -0.0,
    1,
    -1,
    0.5,
    5e-324,
    1e-9,
    2**53 + 1,
    2**63,
    86400,
    86400.000001,
    1e308,
    10**400,
    -(10**400),
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
]

STRINGS: list[str] = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "null",
    "NaN",
    "Infinity",
    "-1",
    "1e309",
    "0x10",
    "720p",
    "16:9",
    "low",
    "x" * 257,
    "\u202e",
    "\ud800",
    "\U0001f600",
    "\ufeff",
    "é",
    "[]",
    "{}",
    "'",
    '"',
    "\\",
]

SCHEMES = ["https", "http", "HTTPS", "hTtP", "ftp", "file", "javascript", "data", "", "h ttp"]
HOSTS = [
    "example.com",
    "cdn.example.com.",
    "localhost",
    "127.0.0.1",
    "0x7f.1",
    "2130706433",
    "169.254.169.254",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[fe80::1%25eth0]",
    "[",
    "]",
    "[::1",
    "::1]",
    "a..b",
    ".",
    "-a-.com",
    "xn--",
    "xn--zz",
    "\u2603.com",
    "ex\u00e4mple.com",
    "exa mple.com",
    "a" * 64 + ".com",
    ("a" * 60 + ".") * 5 + "com",
    "",
]
PORTS = ["", ":", ":0", ":80", ":443", ":65535", ":65536", ":99999999999999999999", ":-1"]
PORTS += [":8o", ":\u0661\u0662", ": 80", ":80:80"]
USERINFO = ["", "user@", "user:pass@", "@", ":@"]
PATHS = ["/clip.mp4", "", "/", "/a b.mp4", "/%00", "/../../etc/passwd", "/?q=1#f", "/\u00e9"]
PATHS += ["#frag", "?", "/" + "x" * 3000, "\\\\x", "/\r\n"]


def pick(fdp: Provider, values: list[Any]) -> Any:
    return values[fdp.ConsumeIntInRange(0, len(values) - 1)]


def text(fdp: Provider, max_len: int = 40) -> str:
    """A short string, lone surrogates included (Python strings can hold them)."""
    return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, max_len))


def number(fdp: Provider) -> Any:
    """An int or float, often at an edge (non-finite, huge, negative zero, bool)."""
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        return pick(fdp, NUMBERS)
    if kind == 1:
        return fdp.ConsumeIntInRange(-(10**6), 10**6)
    if kind == 2:
        return fdp.ConsumeFloat()  # includes nan, inf, subnormals
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    sign = -1 if fdp.ConsumeBool() else 1
    return sign * 10 ** fdp.ConsumeIntInRange(0, 1000)


def any_value(fdp: Provider, depth: int = 0) -> Any:
    """A value of any type a database driver, a JSON decoder or a careless caller could hand
    over (containers only down to MAX_DEPTH)."""
    kinds = 11 if depth < MAX_DEPTH else 8
    kind = fdp.ConsumeIntInRange(0, kinds)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return number(fdp)
    if kind == 3:
        return text(fdp)
    if kind == 4:
        return pick(fdp, STRINGS)
    if kind == 5:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    if kind == 6:
        # What SQLAlchemy returns for NUMERIC and TIMESTAMP columns.
        return Decimal(pick(fdp, ["1.5", "NaN", "-Infinity", "1E+400", "-0"]))
    if kind == 7:
        return datetime.fromtimestamp(fdp.ConsumeIntInRange(0, 2**32), UTC)
    if kind == 8:
        return url(fdp)
    if kind in (9, 10):
        return [any_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {text(fdp, 8): any_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}


def url(fdp: Provider) -> str:
    """A URL assembled from odd parts: schemes, hosts (IP literals, brackets, IDNA, overlong
    labels), ports, user info, paths; sometimes with random text spliced in."""
    parts = [
        pick(fdp, SCHEMES),
        pick(fdp, ["://", ":/", ":", ":///", "//"]),
        pick(fdp, USERINFO),
        pick(fdp, HOSTS) if fdp.ConsumeIntInRange(0, 3) else text(fdp, 12),
        pick(fdp, PORTS),
        pick(fdp, PATHS),
    ]
    if fdp.ConsumeIntInRange(0, 3) == 0:
        parts.insert(fdp.ConsumeIntInRange(0, len(parts)), text(fdp, 8))
    return pick(fdp, ["", " ", "\t", "\n"]) + "".join(parts) + pick(fdp, ["", " ", "\x00"])


def fraction(fdp: Provider) -> Fraction:
    """A frame rate or aspect ratio: common, degenerate (0, negative) or extreme."""
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        common = [(30000, 1001), (24, 1), (25, 1), (60, 1), (0, 1), (-30, 1), (1, 10**30)]
        return Fraction(*pick(fdp, [*common, (10**30, 1), (1, 1), (16, 15)]))
    if kind == 1:
        return Fraction(fdp.ConsumeIntInRange(-1000, 240_000), fdp.ConsumeIntInRange(1, 1001))
    return Fraction(fdp.ConsumeInt(16), fdp.ConsumeInt(16) or 1)
