"""Rows an attacker (or a buggy app) could write: none of them may stop intake.

Each bad row is inserted *before* a good one, the way it happened in production: the sensor
must fail the bad row with a reason, move its cursor past it, and the good export complete.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.cli.main import main
from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.defs.intake.test_sensors import insert

NESTED = "[" * 3000 + "]" * 3000  # deeper than Python's JSON decoder recurses; PostgreSQL takes it


def raw_insert(store: RequestStore, clips_sql: str, **columns: str) -> int:
    """A row written with the app's own SQL, bypassing everything our code would check."""
    values = {
        "project_id": "'p1'",
        "user_id": "'u1'",
        "resolution": "'720p'",
        "quality": "'low'",
        "clips": clips_sql,
        **columns,
    }
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO export_requests ({', '.join(values)}) VALUES ({', '.join(values.values())})"
            )
        )
        return int(conn.execute(text("SELECT max(id) FROM export_requests")).scalar_one())


def hostile_rows(store: RequestStore, cdn_clip: str) -> dict[int, str]:
    """Insert every kind of bad row; return each id with the message its row must show."""
    long_label = "a" * 70
    cases = {
        insert(store, clips=[clip("http://[::1/x.mp4", 1)]): "clip 1: url must be an http(s) URL",
        raw_insert(store, f"'{NESTED}'"): "clips is not valid JSON (nested too deeply)",
        insert(store, clips=[clip(cdn_clip, 1, duration=1e308)]): "clip 1: duration must be",
        insert(store, clips=[clip(cdn_clip, 1, trim=1e308)]): "clip 1: trim_start must be",
        insert(store, clips=[clip("https://cdn.example:99999/a.mp4", 1)]): "port",
        insert(store, clips=[clip(f"https://{long_label}.example/a.mp4", 1)]): "63",
        insert(store, clips=[clip("https://cdn.example/" + "a" * 9000, 1)]): "URL",
        insert(store, user="u" * 5000): "user_id is 5000 characters long; the limit is 256",
        insert(store, project_id="p" * 3000): "project_id is 3000 characters long",
        insert(store, clips=[{"url": cdn_clip, "scene_number": 10**30}]): "scene_number",
        insert(store, resolution="1080p" * 1000): "resolution '1080p1080p",
        insert(store, clips=[clip(cdn_clip, 1, duration=400), clip(cdn_clip, 2, duration=400)]): (
            "the clips' durations add up to 800 s; the longest export is 600 s"
        ),
    }
    if store.engine.dialect.name == "sqlite":
        # Bytes that are not UTF-8 in a text column, and a timestamp that is not one: the
        # driver itself cannot read these rows.
        cases[raw_insert(store, "CAST(X'5bff00fe5d' AS TEXT)")] = "the row could not be read"
        cases[raw_insert(store, "'[]'", created_at="'yesterday-ish'")] = "the row could not be read"
    return cases


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_bad_rows_before_a_good_one_fail_and_the_good_one_completes(
    database, settings, instance, cdn, request
):
    if database == "postgres":
        settings = settings.replace(app_db={"url": request.getfixturevalue("postgres_url")})
    settings.home.mkdir(parents=True, exist_ok=True)
    store = RequestStore.from_url(settings.app_db.url)
    store.create_schema()
    settings = settings.replace(intake={"daily_limit": 0})
    cdn_clip = cdn.url("landscape.mp4")
    expected = hostile_rows(store, cdn_clip)
    good = insert(store, clips=[clip(cdn_clip, 1)])
    defs = build_definitions(settings)

    result = evaluate_intake(instance, defs, cursor=None)

    assert [r.partition_key for r in result.run_requests] == [f"exp-{good}"]
    assert result.cursor == str(good)
    for request_id, message in expected.items():
        status, error = _status(store, request_id)
        assert status == st.FAILED, (request_id, message, error)
        assert message in error, (message, error)
        assert error.startswith("invalid export request: ")
        assert len(error) < 2000  # long inputs are shown cut short
    (run,) = run_requested(instance, defs, result)
    assert run.success
    assert store.get(good)["status"] == st.COMPLETE
    # The next tick has nothing left to do: no bad row is tried again.
    again = evaluate_intake(instance, defs, cursor=result.cursor)
    assert not again.run_requests


def _status(store: RequestStore, request_id: int) -> tuple[str, str]:
    """Status and error of a row, read column by column (some rows cannot be read whole)."""
    with store.engine.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error_message FROM export_requests WHERE id = :id"),
            {"id": request_id},
        ).one()
    return status, error or ""


def test_cli_status_and_request_survive_hostile_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXPORT_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EXPORT_DB_URL", raising=False)
    assert main(["db", "init"]) == 0
    capsys.readouterr()
    store = RequestStore.from_url(f"sqlite:///{tmp_path / 'home' / 'app.db'}")
    nested = raw_insert(store, f"'{NESTED}'")
    assert main(["status", str(nested)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == nested

    code = main(["request", "--project-id", "p", "--user-id", "u", "--clip", "http://[::1/x.mp4"])
    assert code == 2
    assert "clip 1: url must be an http(s) URL" in capsys.readouterr().err

    deep = tmp_path / "deep.json"
    deep.write_text(NESTED)
    assert main(["request", "--project-id", "p", "--user-id", "u", "--clips-json", str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().err


def test_a_database_outage_stops_the_tick_without_failing_rows(settings, store, instance):
    """The catch-all fails rows, not the database: when the database itself is gone the
    row stays pending and the cursor stays put, so the next tick tries again."""
    defs = build_definitions(settings)
    request_id = insert(store)
    store.engine.dispose()
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE export_requests RENAME TO export_requests_away"))
    with pytest.raises(Exception):  # noqa: B017 - the tick itself fails; Dagster logs it
        evaluate_intake(instance, defs, cursor=None)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE export_requests_away RENAME TO export_requests"))
    assert store.get(request_id)["status"] == st.PENDING
    result = evaluate_intake(instance, defs, cursor=None)
    assert [r.partition_key for r in result.run_requests] == [f"exp-{request_id}"]


def test_runs_of_an_oversized_row_still_get_tags_that_fit(settings, store):
    """Intake fails such a row, but a job backfill can still launch its partition: its tags
    must fit Dagster's tag index, or the run is stored without them (and escapes
    cancel-by-tag and the per-user queue)."""
    job = build_definitions(settings).resolve_job_def("export_video_job")
    request_id = insert(store, user="u" * 5000, project_id="p" * 3000)
    tags = job.get_tags_for_partition_key(f"exp-{request_id}", selected_asset_keys=None)
    assert tags["export/user_id"] == "u" * 256
    assert tags["export/project_id"] == "p" * 256
