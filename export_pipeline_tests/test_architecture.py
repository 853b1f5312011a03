"""The architecture is checked, not hoped for: import-linter's contracts in pyproject.toml
(layers, no Dagster below defs/, no cycles), and Dagster's private modules reached only
through `defs.dagster_internals`."""

import re

from importlinter.cli import lint_imports

from export_pipeline_tests import REPO_ROOT

PACKAGE = REPO_ROOT / "export_pipeline"


def test_the_import_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    code = lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "4 kept, 0 broken" in report  # every contract was found and checked


def test_dagster_private_modules_only_through_the_adapter():
    private = re.compile(r"^\s*(?:from|import)\s+dagster\._", re.M)
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if private.search(path.read_text())
    )
    assert users == ["defs/dagster_internals.py"]


def test_dagster_still_has_the_private_names_we_use():
    """Fails loudly when a Dagster upgrade moves or renames one of them."""
    from dagster import DagsterRunStatus

    from export_pipeline.defs import dagster_internals as dg

    assert dg.PARTITION_NAME_TAG == "dagster/partition"
    assert dg.RETRY_NUMBER_TAG == "dagster/retry_number"
    assert dg.WILL_RETRY_TAG == "dagster/will_retry"
    assert dg.PRIORITY_TAG == "dagster/priority"
    assert DagsterRunStatus.STARTED in dg.IN_PROGRESS_RUN_STATUSES
    assert DagsterRunStatus.STARTED in dg.ACTIVE_RUN_STATUSES
    assert DagsterRunStatus.QUEUED not in dg.ACTIVE_RUN_STATUSES  # waiting is not active
    assert {"FAILED", "SUCCEEDED", "PLANNED"} <= {
        s.name for s in dg.AssetCheckExecutionRecordStatus
    }
