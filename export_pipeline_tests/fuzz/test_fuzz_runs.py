"""The atheris targets in CI: a short bounded run of each, which must find nothing.

Only these need atheris (skipped where it is not installed); the committed seeds and the
findings replay everywhere (`test_fuzz_regressions.py`). `EXPORT_FUZZ_SECONDS` sets the
length of each bounded run (default 12 s; the README's longer session uses the same commands
by hand).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SECONDS = int(os.environ.get("EXPORT_FUZZ_SECONDS") or 12)
TARGETS: dict[str, list[str]] = {
    "fuzz_request": [f"-dict={HERE / 'request.dict'}"],
    "fuzz_probe_json": [],
    "fuzz_argv": [],
}


def _seed_dirs(target: str) -> list[str]:
    directory = HERE / "corpus" / target.removeprefix("fuzz_")
    return [str(directory)] if directory.is_dir() else []


def _environment() -> dict[str, str]:
    """This environment without coverage's subprocess hook: measuring the fuzzer's own
    process would slow it several times over and measure nothing new."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}


@pytest.mark.timeout(SECONDS + 120)
@pytest.mark.parametrize("target", TARGETS)
def test_bounded_fuzz_run(target: str, tmp_path: Path):
    """libFuzzer stops after SECONDS; a finding (an exception, a -timeout=10 s hang, or
    running out of memory) stops it early with a non-zero exit and a crash file."""
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    argv = [
        sys.executable,
        "-m",
        f"export_pipeline_tests.fuzz.{target}",
        f"-max_total_time={SECONDS}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
        *TARGETS[target],
        str(corpus),  # new inputs go to the first directory: not the committed seeds
        *_seed_dirs(target),
    ]
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SECONDS + 90,
    )
    crashes = sorted(str(path) for path in artifacts.iterdir())
    # atheris prints the exception on stdout, libFuzzer the input (base64) on stderr.
    at = result.stderr.find("ERROR: libFuzzer")
    report = result.stdout[-3000:] + result.stderr[at if at >= 0 else -1500 :][-1500:]
    assert result.returncode == 0 and not crashes, (
        f"{target} found a problem (exit {result.returncode}); reproduce with "
        f"`python -m export_pipeline_tests.fuzz.{target} {' '.join(crashes) or '<input>'}`:"
        f"\n{report}"
    )
    assert "Done" in result.stderr, result.stderr[-2000:]
