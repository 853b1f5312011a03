"""`BytesProvider` reads a fuzz input as atheris's `FuzzedDataProvider` does, so the seeds and
findings mean the same thing with and without atheris; and the regression tests really run
(not skip) where atheris cannot be imported."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from export_pipeline_tests.fuzz import fuzz_probe_json, fuzz_request
from export_pipeline_tests.fuzz.provider import BytesProvider

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


# ---- the layout, by hand: no atheris needed


def test_integers_in_a_range_come_from_the_back_big_endian():
    fdp = BytesProvider(bytes([0x41, 0x42, 0x01, 0x02]))
    assert fdp.ConsumeIntInRange(0, 255) == 0x02
    assert fdp.ConsumeIntInRange(0, 65535) == 0x0142  # the last bytes first
    assert fdp.ConsumeBytes(10) == b"A"  # the front was never touched
    assert fdp.remaining_bytes() == 0
    assert fdp.ConsumeIntInRange(3, 9) == 3  # out of input: the low end
    assert BytesProvider(bytes([250])).ConsumeIntInRange(0, 9) == 250 % 10


def test_signed_integers_and_bools_come_from_the_front_little_endian():
    fdp = BytesProvider(bytes([0xFE, 0xFF, 0x03, 0x80]))
    assert fdp.ConsumeInt(2) == -2
    assert fdp.ConsumeBool() is True  # 0x03 & 1
    assert fdp.ConsumeInt(16) == -128  # only one byte left, sign-extended
    assert fdp.ConsumeBool() is False and fdp.ConsumeInt(4) == 0


def test_strings_take_their_kind_from_the_first_byte():
    assert BytesProvider(b"\x01h\xe9llo").ConsumeUnicode(3) == "hil"  # ASCII: top bit cleared
    utf16 = BytesProvider(b"\x02" + "\ud800é".encode("utf-16-le", "surrogatepass") + b"!")
    assert utf16.ConsumeUnicode(5) == "\ud800é"  # a lone surrogate; the odd byte is used up
    assert utf16.remaining_bytes() == 0
    wide = BytesProvider(
        b"\x00" + (0x1F600).to_bytes(4, "little") + (0x1FFFFF).to_bytes(4, "little")
    )
    assert wide.ConsumeUnicode(2) == "\U0001f600\U0010ffff"  # 21 bits, kept below U+110000
    assert BytesProvider(b"\x01").ConsumeUnicode(4) == ""


def test_floats_special_values_then_the_whole_range():
    special = BytesProvider(bytes([4]) + bytes(9) + bytes([2]))
    assert math.isnan(special.ConsumeFloat())
    assert special.ConsumeFloat() == math.inf
    top = BytesProvider(bytes([11, 1]) + b"\xff" * 8)  # past the specials; upper half; p = 1
    assert top.ConsumeFloat() == sys.float_info.max
    assert BytesProvider(b"").ConsumeFloat() == 0.0
    assert BytesProvider(bytes([0]) + bytes(8)).ConsumeRegularFloat() == -sys.float_info.max


# ---- against atheris itself


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return type(a) is type(b) and a == b


RANGES = [(0, 0), (0, 1), (0, 7), (-5, 5), (0, 255), (0, 256), (-(2**31), 2**31 - 1),
          (0, 2**64 - 1), (-(10**6), 10**6), (0, 10**30), (-(10**40), 10**25)]  # fmt: skip


def _calls(rng: random.Random) -> list[tuple[str, tuple]]:
    calls = []
    for _ in range(rng.randint(1, 12)):
        name = rng.choice(["ConsumeIntInRange", "ConsumeInt", "ConsumeBytes", "ConsumeUnicode",
                           "ConsumeFloat", "ConsumeRegularFloat", "ConsumeBool",
                           "ConsumeProbability", "ConsumeFloatInRange"])  # fmt: skip
        args: tuple = ()
        if name == "ConsumeIntInRange":
            args = rng.choice(RANGES)
        elif name in ("ConsumeInt", "ConsumeBytes", "ConsumeUnicode"):
            args = (rng.randint(0, 20),)
        elif name == "ConsumeFloatInRange":
            args = rng.choice([(0.0, 1.0), (-1e300, 1e300), (-sys.float_info.max, 5.0), (2.0, 2.0)])
        calls.append((name, args))
    return calls


def test_the_same_values_as_atheris_for_the_same_bytes():
    atheris = pytest.importorskip("atheris")
    rng = random.Random(21)
    for _ in range(3000):
        # Small byte values often: they pick special floats and string kinds.
        data = bytes(rng.choice([0, 1, 2, 3, 4, 10, 11, 0x7F, 0x80, 0xFF, rng.randrange(256)])
                     for _ in range(rng.randint(0, 48)))  # fmt: skip
        theirs, ours = atheris.FuzzedDataProvider(data), BytesProvider(data)
        for name, args in _calls(rng):
            expected, got = getattr(theirs, name)(*args), getattr(ours, name)(*args)
            assert _same(expected, got), (data.hex(), name, args, expected, got)
            assert theirs.remaining_bytes() == ours.remaining_bytes(), (data.hex(), name, args)


def _inputs() -> list[bytes]:
    rng = random.Random(7)
    seeds = [path.read_bytes() for path in sorted((HERE / "corpus").glob("*/*"))]
    noise = [rng.randbytes(rng.randint(0, 400)) for _ in range(300)]
    return seeds + noise


def test_the_targets_decode_inputs_as_under_atheris(monkeypatch):
    """The rows and ffprobe descriptions the targets build from the seeds and from random
    inputs are the same with either reader."""
    atheris = pytest.importorskip("atheris")
    for module, decode in ((fuzz_request, "row_from"), (fuzz_probe_json, "description_from")):
        for data in _inputs():
            monkeypatch.setattr(module, "Provider", atheris.FuzzedDataProvider)
            expected = repr(getattr(module, decode)(data))
            monkeypatch.setattr(module, "Provider", BytesProvider)
            assert repr(getattr(module, decode)(data)) == expected, (decode, data.hex())


# ---- the regression tests where atheris cannot be imported


BLOCK_ATHERIS = """
import sys
sys.modules["atheris"] = None  # `import atheris` now raises ImportError
from export_pipeline_tests.fuzz import values
from export_pipeline_tests.fuzz.provider import BytesProvider
assert values.Provider is BytesProvider, values.Provider
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


OUTCOME = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", re.MULTILINE)


@pytest.mark.timeout(300)
def test_the_regression_tests_run_without_atheris(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_ATHERIS, "-v", "-rs", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'pytest'}", str(HERE / "test_fuzz_regressions.py"),
         str(HERE / "test_fuzz_runs.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    outcomes = dict(OUTCOME.findall(done.stdout))
    assert len(outcomes) > 30 and set(outcomes.values()) == {"PASSED"}, done.stdout[-3000:]
    assert all("test_fuzz_regressions.py::" in name for name in outcomes), outcomes
    # The bounded runs, and only they, are skipped: atheris is missing.
    skipped = "SKIPPED [1] export_pipeline_tests/fuzz/test_fuzz_runs.py"
    assert skipped in done.stdout, done.stdout[-2000:]
