"""The operator commands: list, cancel, retry, reexport, metrics — on real exports."""

import pytest

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.cli.main import main
from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline.domain.failures import FailureCause
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


def test_list_names_the_statuses_when_one_is_unknown(cli_env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--status", "bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'complete'" in err and "'expired'" in err


def test_request_sets_every_column_of_the_contract(cli_env, store, tmp_path, capsys):
    captions = tmp_path / "talk.vtt"
    captions.write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n")
    code = main([
        "request", "--project-id", "p", "--user-id", "u", "--format", "webm",
        "--resolution", "720p", "--aspect-ratio", "4:5", "--quality", "medium",
        "--clip", "https://cdn.example/a.mp4,0.5,2",
        "--captions", str(captions), "--soft-captions",
        "--soundtrack", "https://cdn.example/song.mp3", "--soundtrack-volume", "0.2",
        "--soundtrack-fade-out", "3", "--soundtrack-once",
        "--no-audio-normalize", "--retention-days", "30", "--notify-email", "ann@example.com",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    row = store.get(int(capsys.readouterr().out))
    # Every column the app writes can be set from the command line (a new one needs a flag).
    from export_pipeline.io.appdb.schema import request_columns

    defaults = {"format": "mp4", "aspect_ratio": "16:9", "quality": "high", "resolution": "1080p"}
    for column in request_columns():
        assert row[column] is not None and row[column] != defaults.get(column), column
    from export_pipeline.domain.request import parse_request

    spec = parse_request(row)
    assert (spec.format, spec.aspect_ratio, spec.quality, spec.retention_days) == (
        "webm",
        "4:5",
        "medium",
        30,
    )
    assert spec.audio_normalize is False and spec.notify_email == "ann@example.com"
    assert spec.captions.kind == "vtt" and spec.captions.burn_in is False
    assert "hello" in spec.captions.text
    track = spec.soundtrack.track
    assert spec.soundtrack.url == "https://cdn.example/song.mp3"
    assert (track.volume, track.fade_out, track.loop) == (0.2, 3.0, False)
    # a bad value is refused before anything is written
    assert main(["request", "--project-id", "p", "--user-id", "u", "--clip",
                 "https://cdn.example/a.mp4", "--retention-days", "0"]) == 2  # fmt: skip
    assert "retention_days must be a whole number" in capsys.readouterr().err
    assert main(["request", "--project-id", "p", "--user-id", "u", "--clip",
                 "https://cdn.example/a.mp4", "--notify-email", "ann at example"]) == 2  # fmt: skip
    assert "notify_email must be one email address" in capsys.readouterr().err
    assert main(["request", "--project-id", "p", "--user-id", "u", "--clip",
                 "https://cdn.example/a.mp4", "--captions", str(tmp_path / "x.txt")]) == 2  # fmt: skip
    assert "an .srt or .vtt file" in capsys.readouterr().err


def test_backfill_exports_finished_requests_again(cli_env, store, instance, cdn, capsys):
    """The runbook's re-export of old requests: they go back in line, past the daily
    limit, and the sensor and a run make them complete again, each in its own partition."""
    defs = build_definitions(cli_env.replace(intake={"daily_limit": 1}))
    a, b = insert(store, cdn, project="film"), insert(store, cdn, name="classic.mp4")
    tick = evaluate_intake(instance, defs, cursor=None)
    for result in run_requested(instance, defs, tick):
        assert result.success
    store.transition(b, st.EXPIRED, video_url=None)
    before = store.get(a)["video_url"]

    assert main(["backfill"]) == 2  # which ones?
    assert "--ids" in capsys.readouterr().err
    assert main(["backfill", "--ids", f"{a},{b}", "--dry-run"]) == 0
    assert f"would export again 2 request(s): {a}, {b}" in capsys.readouterr().out
    assert store.get(a)["status"] == st.COMPLETE
    assert main(["backfill", "--project-id", "film", "--status", "complete"]) == 0
    assert f"1 request(s) pending again: {a}" in capsys.readouterr().out
    assert main(["backfill", "--ids", str(b)]) == 0
    assert {store.get(i)["status"] for i in (a, b)} == {st.PENDING}

    tick = evaluate_intake(instance, defs, cursor=tick.cursor)
    assert sorted(r.partition_key for r in tick.run_requests) == [f"exp-{a}", f"exp-{b}"]
    for result in run_requested(instance, defs, tick):
        assert result.success
    rows = [store.get(i) for i in (a, b)]
    assert [r["status"] for r in rows] == [st.COMPLETE, st.COMPLETE]
    assert rows[0]["video_url"] == before and rows[1]["video_url"]


def test_sweep_runs_retention_now_in_either_world(cli_env, store, cdn, tmp_path, monkeypatch,
                                                  capsys):  # fmt: skip
    """`export-pipeline sweep` needs no DAGSTER_HOME (the embedded instance), and takes
    DAGSTER_HOME's instance when it is set."""
    monkeypatch.chdir(tmp_path)  # no ./dagster.yaml: the instance under EXPORT_PIPELINE_HOME
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    request_id = insert(store, cdn)
    store.fail(request_id, st.FAILED, "old", FailureCause.OTHER)
    store.transition(request_id, st.PENDING)  # (not due: the sweep reports nothing)
    assert main(["sweep", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 request(s) swept" in out and "would remove 0" in out
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["sweep"]) == 0
    assert "0 request(s) swept" in capsys.readouterr().out
    assert (home / "history").exists() or any(home.iterdir())  # it used that instance
