"""The operator commands: list, cancel, retry, reexport, metrics — on real exports."""

import pytest

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.cli.main import main
from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline_tests.cdn import status
from export_pipeline_tests.conftest import clip


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("EXPORT_PIPELINE_HOME", str(settings.home))
    monkeypatch.delenv("EXPORT_DB_URL", raising=False)
    return settings


def insert(store, cdn, name="landscape.mp4", user="u1", project="p1"):
    return store.insert(
        project_id=project, user_id=user, resolution="720p", quality="low",
        clips=[clip(cdn.url(name), 1)],
    )  # fmt: skip


def test_list_filters(cli_env, store, cdn, capsys):
    a = insert(store, cdn, user="ann", project="x")
    b = insert(store, cdn, user="ben", project="y")
    store.transition(b, st.QUEUED)
    assert main(["list", "--user-id", "ann"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("id\tstatus") and len(lines) == 2 and lines[1].startswith(f"{a}\t")
    main(["list", "--status", "queued", "--since", "1h"])
    assert [ln.split("\t")[0] for ln in capsys.readouterr().out.splitlines()[1:]] == [str(b)]
    main(["list", "--project-id", "y"])
    assert f"{b}\tqueued" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["list", "--since", "soon"])


def test_cancel(cli_env, store, cdn, capsys):
    request_id = insert(store, cdn)
    assert main(["cancel", str(request_id)]) == 0
    assert store.get(request_id)["cancel_requested_at"] is not None
    store.transition(request_id, st.CANCELED)
    assert main(["cancel", str(request_id)]) == 1
    assert "already canceled" in capsys.readouterr().err
    assert main(["cancel", "999"]) == 1


def test_retry_runs_a_failed_export_again(cli_env, store, instance, cdn, capsys):
    defs = build_definitions(cli_env)
    cdn.fail("landscape.mp4", status(503))
    request_id = insert(store, cdn)
    tick = evaluate_intake(instance, defs, cursor=None)
    (failed,) = run_requested(instance, defs, tick)
    assert store.get(request_id)["status"] == st.FAILED

    assert main(["retry", str(request_id)]) == 0
    row = store.get(request_id)
    assert row["status"] == st.PENDING and row["error_message"] is None
    cdn.heal()
    # The row is behind the sensor's cursor, but re-queued rows are taken again,
    # with a run key of their own (the first one was used).
    tick = evaluate_intake(instance, defs, cursor=tick.cursor)
    (request,) = tick.run_requests
    assert request.partition_key == f"exp-{request_id}"
    assert request.run_key.startswith(f"exp-{request_id}@")
    (done,) = run_requested(instance, defs, tick)
    assert done.success and store.get(request_id)["status"] == st.COMPLETE

    assert main(["retry", str(request_id)]) == 1  # complete: nothing to retry
    assert "only failed, canceled or rejected" in capsys.readouterr().err


def test_reexport_copies_the_request(cli_env, store, cdn, capsys):
    """An mp4-hevc export with captions, a soundtrack, loudness off and a 30-day plan
    comes back exactly so: every column the app wrote (io.appdb.schema.request_columns)."""
    from export_pipeline.io.appdb.schema import request_columns
    from export_pipeline_tests.io.appdb.test_store import REQUEST_SAMPLE

    old = store.insert(**REQUEST_SAMPLE)
    assert main(["reexport", str(old)]) == 0
    new = int(capsys.readouterr().out.strip())
    a, b = store.get(old), store.get(new)
    assert new != old and b["status"] == st.PENDING
    assert {name: b[name] for name in request_columns()} == {
        name: a[name] for name in request_columns()
    }
    assert b["format"] == "mp4-hevc" and b["retention_days"] == 30
    assert main(["reexport", "999"]) == 1


def test_metrics_prints_the_kpis(cli_env, store, capsys):
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out.lower()
    assert "success rate" in out
