"""What an exception raised in a step means for the export (`steps.as_failure`)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from export_pipeline.defs.export.steps import as_failure
from export_pipeline.domain.failures import FailureCause


@pytest.mark.parametrize(
    ("exc", "cause", "permanent"),
    [
        (ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), FailureCause.STORAGE, False),
        (EndpointConnectionError(endpoint_url="http://s3"), FailureCause.STORAGE, False),
        (OSError(errno.ENOSPC, "No space left"), FailureCause.STORAGE, False),
        (ValueError("bad"), FailureCause.OTHER, True),
        (RuntimeError("?"), FailureCause.OTHER, False),
    ],
)
def test_a_steps_error_becomes_a_cause(exc, cause, permanent):
    failure = as_failure(exc)
    assert (failure.cause, failure.permanent) == (cause, permanent)


def test_a_run_worker_on_local_storage_does_not_import_boto3_or_jinja2(tmp_path):
    """Every run worker imports the definitions before its first step: what a run on local
    storage does not use stays out of that (issue 24)."""
    code = (
        "import sys, export_pipeline.definitions; "
        "print(sorted(m for m in ('boto3', 'botocore', 'jinja2') if m in sys.modules))"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DAGSTER_"))},
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),  # this checkout's code
        "EXPORT_PIPELINE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr
