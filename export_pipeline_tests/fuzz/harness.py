"""What every fuzz target shares: how a broken contract is reported, and how it is run.

atheris is imported only to fuzz (a target run as `__main__`): replaying inputs through a
target's `test_one_input` needs no atheris (`provider.py` reads them the same way).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager


class Finding(AssertionError):
    """The code under test broke its contract for this input (not merely rejected it)."""


def instrumented(module_name: str) -> AbstractContextManager[object]:
    """Instrument the imports of the code under test when the target runs as a fuzzer.

    Nothing when pytest imports a target to replay inputs: instrumenting `export_pipeline` in
    the test process would slow down every later test that shares it.
    """
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["export_pipeline"])


def fuzz_main(test_one_input: Callable[[bytes], None]) -> None:
    """Hand the target and the command line (libFuzzer flags, corpus dirs) to atheris."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
