"""A fuzz input read the way atheris's `FuzzedDataProvider` reads it, in plain Python.

The targets turn bytes into values through a provider. Under the fuzzer that is atheris's own
(native, fast); where atheris is not installed (it ships wheels for x86-64 Linux only) this
class gives the same values for the same bytes, so the committed seeds and the findings
replay as plain tests on every machine. `test_provider.py` checks it against atheris.

Only what the targets use is here. The layout it follows: strings, bytes and floats come
from the front of the input, integers in a range from the back, little-endian.
"""

from __future__ import annotations

import struct
import sys

_DOUBLE_MAX = sys.float_info.max
_UINT64_MAX = 2**64 - 1
# ConsumeFloat: a leading byte of 0..10 picks one of these special values.
_SPECIAL_FLOATS = (
    0.0,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    5e-324,  # the smallest subnormal
    -5e-324,
    sys.float_info.min,
    -sys.float_info.min,
    _DOUBLE_MAX,
    -_DOUBLE_MAX,
)
_REGULAR_FLOAT_BYTES = 9  # a bool and 8 bytes of probability: what a special value skips


class BytesProvider:
    """`atheris.FuzzedDataProvider`'s reading of `data`, for the methods the targets call."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._front = 0  # next byte taken from the front
        self._back = len(self._data)  # one past the next byte taken from the back

    def remaining_bytes(self) -> int:
        return self._back - self._front

    def _take(self, count: int) -> bytes:
        """Up to `count` bytes from the front."""
        count = max(0, min(count, self.remaining_bytes()))
        chunk = self._data[self._front : self._front + count]
        self._front += count
        return chunk

    def _skip(self, count: int) -> None:
        """Drop `count` bytes from the front; all that is left when there are fewer."""
        self._front += min(count, self.remaining_bytes())

    def ConsumeBytes(self, count: int) -> bytes:  # noqa: N802 - atheris's names
        return self._take(count)

    def ConsumeBool(self) -> bool:  # noqa: N802
        return bool(self._take(1)[0] & 1) if self.remaining_bytes() else False

    def ConsumeInt(self, size: int) -> int:  # noqa: N802
        """A signed little-endian integer of `size` bytes (fewer when the input runs out)."""
        return int.from_bytes(self._take(size), "little", signed=True)

    def ConsumeIntInRange(self, low: int, high: int) -> int:  # noqa: N802
        if low > high:
            raise RuntimeError("ConsumeIntInRange: min must be <= max")
        span = high - low
        bits = span.bit_length()
        if bits > 64:  # a wide range: whole bytes from the front, reduced modulo the span
            return low + self.ConsumeInt(bits // 8) % (span + 1)
        value, shift = 0, 0
        while shift < bits and span >> shift and self.remaining_bytes():
            self._back -= 1
            value = (value << 8) | self._data[self._back]
            shift += 8
        if span != _UINT64_MAX:
            value %= span + 1
        return low + value

    def ConsumeProbability(self) -> float:  # noqa: N802
        """[0, 1] from up to 8 bytes: an unsigned 64-bit integer over its maximum."""
        return float(int.from_bytes(self._take(8), "little")) / float(_UINT64_MAX)

    def ConsumeFloatInRange(self, low: float, high: float) -> float:  # noqa: N802
        if low > high:
            raise RuntimeError("ConsumeFloatInRange: min must be <= max")
        result = low
        if low < 0 < high and low + _DOUBLE_MAX < high:  # the span overflows a double
            span = high / 2 - low / 2
            if self.ConsumeBool():
                result += span
        else:
            span = high - low
        return result + span * self.ConsumeProbability()

    def ConsumeRegularFloat(self) -> float:  # noqa: N802
        return self.ConsumeFloatInRange(-_DOUBLE_MAX, _DOUBLE_MAX)

    def ConsumeFloat(self) -> float:  # noqa: N802
        """A float, special values (infinities, NaN, the extremes) included."""
        if not self.remaining_bytes():
            return 0.0
        kind = self._take(1)[0]
        if kind < len(_SPECIAL_FLOATS):
            self._skip(_REGULAR_FLOAT_BYTES)
            return _SPECIAL_FLOATS[kind]
        return self.ConsumeRegularFloat()

    def ConsumeUnicode(self, count: int) -> str:  # noqa: N802
        """Up to `count` characters, lone surrogates included. The first byte picks the kind:
        odd, ASCII (a byte each); else bit 1 set, UTF-16 code units (two bytes each); else
        code points of 21 bits (four bytes each)."""
        if count <= 0 or not self.remaining_bytes():
            return ""
        if self.remaining_bytes() == 1:
            self._skip(1)
            return ""
        spec = self._take(1)[0]
        if spec & 1:
            return "".join(chr(b & 0x7F) for b in self._take(count))
        width = 2 if spec & 2 else 4
        raw = self._take(count * width)
        whole = raw[: len(raw) - len(raw) % width]
        if width == 2:
            return "".join(chr(u) for (u,) in struct.iter_unpack("<H", whole))
        points = []
        for (point,) in struct.iter_unpack("<I", whole):
            point &= 0x1FFFFF
            if point & 0x100000:  # past U+10FFFF: keep it in range
                point &= ~0x0F0000
            points.append(chr(point))
        return "".join(points)
