from datetime import datetime

import pytest
from sqlalchemy import inspect, text

from export_pipeline.domain import status as st
from export_pipeline.domain.failures import FailureCause
from export_pipeline.domain.values import decode_json
from export_pipeline.io.appdb.store import RequestStore

CLIPS = [{"url": "https://cdn.example/a.mp4", "scene_number": 1}]


def new_store(url: str) -> RequestStore:
    store = RequestStore.from_url(url)
    store.create_schema()
    store.create_schema()  # idempotent
    return store


def test_schema_defaults_and_indexes(db_url):
    store = new_store(db_url)
    request_id = store.insert(
        project_id="p1", user_id="u1", resolution="1080p", quality="high", clips=CLIPS
    )
    row = store.get(request_id)
    assert row["status"] == "pending"
    assert row["aspect_ratio"] == "16:9"
    assert row["progress"] == 0 and row["retry_count"] == 0
    assert row["created_at"] is not None and row["updated_at"] is not None
    assert decode_json(row["clips"]) == CLIPS
    indexes = {ix["name"] for ix in inspect(store.engine).get_indexes("export_requests")}
    assert {
        "ix_export_requests_status_id",
        "ix_export_requests_user_created",
        "ix_export_requests_project",
    } <= indexes


def test_app_can_insert_with_plain_sql(db_url):
    """The app writes rows with its own SQL: only the app's columns are needed."""
    store = new_store(db_url)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO export_requests (project_id, user_id, resolution, quality, clips) "
                "VALUES ('p', 'u', '720p', 'low', :clips)"
            ),
            {"clips": '[{"url": "https://cdn.example/x.mp4", "scene_number": 1}]'},
        )
    (row,) = store.candidates(0, 10)
    assert row["status"] == "pending" and row["aspect_ratio"] == "16:9"
    assert decode_json(row["clips"])[0]["url"] == "https://cdn.example/x.mp4"


def test_transitions_follow_the_state_machine(db_url):
    store = new_store(db_url)
    rid = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    assert not store.transition(rid, st.COMPLETE)  # pending cannot complete
    assert store.transition(rid, st.QUEUED)
    assert store.transition(rid, st.PROCESSING, run_id="run-1")
    assert store.transition(rid, st.COMPLETE, only_run_id="run-1", video_url="file:///v.mp4")
    # a stale run's late failure does not undo the result
    assert not store.fail(rid, st.FAILED, "late", FailureCause.OTHER, only_run_id="run-0")
    assert not store.fail(rid, st.FAILED, "late", FailureCause.OTHER)
    row = store.get(rid)
    assert row["status"] == "complete" and row["error_message"] is None
    assert row["video_url"] == "file:///v.mp4"


def test_progress_only_rises_while_processing(db_url):
    store = new_store(db_url)
    rid = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    assert not store.set_progress(rid, 10)  # pending: not processing yet
    store.transition(rid, st.QUEUED)
    store.transition(rid, st.PROCESSING, run_id="r")
    assert store.set_progress(rid, 40, run_id="r")
    assert not store.set_progress(rid, 30, run_id="r")
    assert not store.set_progress(rid, 50, run_id="other-run")
    assert store.set_progress(rid, 250, run_id="r")  # clamped
    assert store.get(rid)["progress"] == 100


def test_retry_counting_and_listing(db_url):
    store = new_store(db_url)
    a = store.insert(project_id="p1", user_id="u1", resolution="720p", quality="low", clips=CLIPS)
    b = store.insert(project_id="p2", user_id="u2", resolution="720p", quality="low", clips=CLIPS)
    store.transition(a, st.QUEUED)
    store.transition(a, st.PROCESSING, run_id="r")
    assert store.increment_retry(a, "CDN answered 503", FailureCause.CLIP_DOWNLOAD, "r")
    assert not store.increment_retry(
        a, "again", FailureCause.CLIP_DOWNLOAD, "r"
    )  # retrying -> retrying is not a move
    row = store.get(a)
    assert (row["status"], row["retry_count"], row["error_message"], row["error_cause"]) == (
        "retrying",
        1,
        "CDN answered 503",
        "clip_download",
    )
    assert [r["id"] for r in store.list(user_id="u2")] == [b]
    assert [r["id"] for r in store.list(status="retrying")] == [a]
    assert [r["id"] for r in store.list(project_id="p1")] == [a]
    assert store.count_by_status() == {"retrying": 1, "pending": 1}
    assert [r["id"] for r in store.candidates(0, 10)] == [b]


def test_create_schema_adds_columns_of_newer_versions(db_url):
    store = RequestStore.from_url(db_url)
    with store.engine.begin() as conn:  # a table as an older version created it
        conn.execute(
            text(
                "CREATE TABLE export_requests (id INTEGER PRIMARY KEY, project_id TEXT NOT NULL,"
                " user_id TEXT NOT NULL, resolution TEXT NOT NULL, aspect_ratio TEXT NOT NULL"
                " DEFAULT '16:9', quality TEXT NOT NULL, clips TEXT NOT NULL, status TEXT NOT NULL"
                " DEFAULT 'pending', progress INTEGER NOT NULL DEFAULT 0, retry_count INTEGER NOT"
                " NULL DEFAULT 0, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
                " updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
        )
    store.create_schema()
    columns = {c["name"] for c in inspect(store.engine).get_columns("export_requests")}
    assert {"poster_url", "notified_status", "video_url", "cancel_requested_at"} <= columns
    assert {"retention_days", "expires_at", "reminded_at"} <= columns  # issue 14
    with store.engine.begin() as conn:  # the old table has no id sequence on PostgreSQL
        conn.execute(
            text(
                "INSERT INTO export_requests (id, project_id, user_id, resolution, quality, "
                "clips, retention_days) VALUES (1, 'p', 'u', '720p', 'low', '[]', 30)"
            )
        )
    assert store.get(1)["retention_days"] == 30 and store.get(1)["expires_at"] is None


def test_lost_database_connections_are_replaced(postgres_url, postgres_admin):
    """PostgreSQL restarted or a connection dropped: the pool checks connections before use
    (pool_pre_ping), so the next query reconnects instead of failing the step."""
    store = new_store(postgres_url)
    request_id = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS
    )
    assert store.get(request_id)["status"] == "pending"  # a pooled connection now exists
    database = postgres_url.rsplit("/", 1)[1]
    with postgres_admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).scalar()
    assert killed >= 1
    assert store.transition(request_id, "queued")  # works on a fresh connection
    assert store.get(request_id)["status"] == "queued"


def test_time_left_and_queue_place_are_written_and_cleared_with_the_status(db_url):
    from datetime import timedelta

    from export_pipeline.domain.clock import utcnow

    store = new_store(db_url)
    rid = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    finish = utcnow() + timedelta(seconds=40)
    assert store.transition(rid, st.QUEUED, eta_s=40, estimated_finish_at=finish)
    assert store.set_queue_place(rid, 2, "waiting for a free worker", 55, finish)
    row = store.get(rid)
    assert (row["queue_position"], row["queue_reason"], row["eta_s"]) == (
        2,
        "waiting for a free worker",
        55,
    )
    # Starting clears the place in the queue.
    assert store.transition(rid, st.PROCESSING, run_id="r")
    row = store.get(rid)
    assert (row["queue_position"], row["queue_reason"], row["eta_s"]) == (None, None, 55)
    assert not store.set_queue_place(rid, 1, "waiting for a free worker", 1, finish)  # not queued
    # Progress and the time left go in one UPDATE; NULL means unknown.
    assert store.set_progress(rid, 30, run_id="r", eta_s=20, estimated_finish_at=finish)
    assert store.get(rid)["eta_s"] == 20
    assert store.set_progress(rid, 31, run_id="r")
    assert store.get(rid)["eta_s"] is None and store.get(rid)["estimated_finish_at"] is None
    assert store.set_progress(rid, 40, run_id="r", eta_s=9, estimated_finish_at=finish)
    # A retry makes it unknown; the end clears it.
    assert store.increment_retry(rid, "attempt 1 failed", FailureCause.OTHER, "r")
    assert store.get(rid)["eta_s"] is None
    assert store.transition(rid, st.PROCESSING, run_id="r")
    assert store.set_progress(rid, 50, run_id="r", eta_s=5, estimated_finish_at=finish)
    assert store.transition(rid, st.COMPLETE, only_run_id="r", progress=100)
    row = store.get(rid)
    assert (row["eta_s"], row["estimated_finish_at"], row["queue_position"]) == (None, None, None)


def test_recent_completed_is_the_history_of_finished_exports(db_url):
    store = new_store(db_url)
    ids = [
        store.insert(project_id="p", user_id="u", resolution=r, quality="low", clips=CLIPS)
        for r in ("720p", "1080p", "4k")
    ]
    for rid in ids:
        store.transition(rid, st.QUEUED)
    store.transition(ids[0], st.PROCESSING, processing_started_at=store.get(ids[0])["created_at"])
    store.transition(ids[0], st.COMPLETE, completed_at=store.get(ids[0])["created_at"])
    store.transition(ids[1], st.PROCESSING)  # not finished
    assert [r["resolution"] for r in store.recent_completed()] == ["720p"]
    assert [r["id"] for r in store.active()] == ids[1:]


def test_the_optional_parts_of_a_request_round_trip_through_the_app_sql(db_url):
    """audio_normalize, soundtrack and captions as the app writes them with plain SQL, read
    back the way the sensor parses them (on both databases)."""
    from export_pipeline.domain.request import parse_request

    store = new_store(db_url)
    soundtrack = '{"url": "https://cdn.example/song.mp3", "volume": 0.25}'
    captions = '{"srt": "1\\n00:00:00,500 --> 00:00:01,500\\nHello\\n", "burn_in": true}'
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO export_requests (project_id, user_id, resolution, quality, clips, "
                "audio_normalize, soundtrack, captions) VALUES ('p', 'u', '720p', 'low', :clips, "
                ":normalize, :soundtrack, :captions)"
            ),
            {"clips": '[{"url": "https://cdn.example/x.mp4", "scene_number": 1}]',
             "normalize": False, "soundtrack": soundtrack, "captions": captions},
        )  # fmt: skip
    (row,) = store.candidates(0, 10)
    assert decode_json(row["soundtrack"])["volume"] == 0.25
    assert decode_json(row["captions"])["burn_in"] is True
    assert parse_request(row).audio_normalize is False
    plain = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    row = store.get(plain)
    assert row["audio_normalize"] is None and row["soundtrack"] is None
    assert parse_request(row).audio_normalize is True


def test_segment_progress_adds_up_by_length(db_url):
    store = RequestStore.from_url(db_url)
    store.create_schema()
    assert store.segment_progress(7, {0: 0.5}) is None  # no plan recorded
    store.start_segments(7, [10.0, 5.0, 5.0], [0.0, 0.0, 1.0])  # the last one was cached
    assert store.segment_progress(7, {0: 0.5}) == pytest.approx(0.5)  # (5 + 5) / 20
    assert store.segment_progress(7, {0: 1.0, 1: 0.4}) == pytest.approx(0.85)  # (10 + 2 + 5) / 20
    store.start_segments(7, [20.0], [0.0])  # planned again: the old rows are replaced
    assert store.segment_progress(7, {}) == 0.0
    store.end_segments(7)
    assert store.segment_progress(7, {}) is None


def test_the_cause_is_written_with_the_message_and_cleared_with_it(db_url):
    store = new_store(db_url)
    rid = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    with pytest.raises(ValueError, match="error_cause"):
        store.transition(rid, st.FAILED, error_message="a message without its cause")
    assert store.get(rid)["status"] == st.PENDING  # nothing was written
    assert store.fail(rid, st.FAILED, "clips is empty", FailureCause.INVALID_REQUEST)
    row = store.get(rid)
    assert (row["error_message"], row["error_cause"]) == ("clips is empty", "invalid_request")
    assert row["completed_at"] is not None
    assert store.requeue(rid)
    row = store.get(rid)
    assert (row["status"], row["error_message"], row["error_cause"]) == (st.PENDING, None, None)


def test_timestamps_come_back_aware_in_utc(db_url):
    """SQLite keeps the digits it is given and returns them naive; the column type makes
    every database give and take aware UTC moments, whatever zone they were written in."""
    from datetime import timedelta, timezone

    store = new_store(db_url)
    rid = store.insert(project_id="p", user_id="u", resolution="720p", quality="low", clips=CLIPS)
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    store.transition(rid, st.QUEUED, queued_at=moment)
    row = store.get(rid)
    assert row["queued_at"] == moment and row["queued_at"].utcoffset() == timedelta(0)
    assert row["created_at"].tzinfo is not None
    # compared in UTC by the database too
    assert [r["id"] for r in store.created_since(row["created_at"] - timedelta(seconds=1))] == [rid]


# A value for each request column that is not its default: a new request column without a
# value here fails the tests below, so nobody adds one that a re-export would lose.
REQUEST_SAMPLE = {
    "project_id": "p-9",
    "user_id": "u-9",
    "resolution": "720p",
    "aspect_ratio": "9:16",
    "quality": "low",
    "format": "mp4-hevc",
    "clips": [{"url": "https://cdn.example/a.mp4", "scene_number": 3, "duration": 2}],
    "audio_normalize": False,
    "soundtrack": {"url": "https://cdn.example/song.mp3", "volume": 0.5},
    "captions": {"srt": "1\n00:00:00,000 --> 00:00:01,000\nhi\n", "burn_in": False},
    "retention_days": 30,
    "notify_email": "creator@example.com",
}


def test_every_column_says_who_writes_it():
    from export_pipeline.io.appdb.schema import PART, export_requests, request_columns

    assert [c.name for c in export_requests.columns if PART not in c.info] == ["id"]
    assert set(request_columns()) == set(REQUEST_SAMPLE)


def test_a_reexport_copies_every_request_column(db_url):
    store = new_store(db_url)
    original = store.insert(**REQUEST_SAMPLE)
    store.fail(original, st.FAILED, "boom", FailureCause.FFMPEG)
    again = store.reexport(original)
    row = store.get(again)
    assert again != original and row["status"] == st.PENDING and row["error_cause"] is None
    for name, value in REQUEST_SAMPLE.items():
        stored = row[name]
        if name in ("clips", "soundtrack", "captions"):
            stored = decode_json(stored)
        elif name == "audio_normalize":
            stored = str(stored).lower() in ("true", "t", "1")
        assert stored == value, name
    assert store.reexport(10**9) is None
    with pytest.raises(TypeError, match="not columns of a request"):
        store.insert(**REQUEST_SAMPLE, status="complete")


def test_an_outcome_email_is_claimed_once_given_back_and_earned_again(db_url):
    """The claim behind `export_email_sensor` (issue 23): one conditional UPDATE per
    outcome; a failed send gives it back as it was; a newer completion is a new outcome."""
    from datetime import UTC, timedelta

    store = new_store(db_url)
    rid = store.insert(**REQUEST_SAMPLE)
    plain = store.insert(**{**REQUEST_SAMPLE, "notify_email": None})
    for request_id in (rid, plain):
        store.transition(request_id, st.QUEUED)
        store.transition(request_id, st.PROCESSING, run_id="r1")
        store.transition(request_id, st.COMPLETE, completed_at=datetime.now(UTC))
    since = datetime.now(UTC) - timedelta(hours=1)
    (row,) = store.unemailed([st.COMPLETE, st.FAILED], since)  # only rows with an address
    assert row["id"] == rid
    now = datetime.now(UTC)
    claim = store.claim_email(rid, st.COMPLETE, row["completed_at"], now)
    assert claim is not None
    assert store.claim_email(rid, st.COMPLETE, row["completed_at"], now) is None  # taken
    assert store.unemailed([st.COMPLETE], since) == []
    assert store.release_email(rid, claim, row["emailed_status"], row["emailed_at"])
    assert store.get(rid)["emailed_status"] is None
    claim = store.claim_email(rid, st.COMPLETE, row["completed_at"], now)
    assert store.get(rid)["emailed_status"] == st.COMPLETE
    # another completion (a re-execution) is a new outcome, with its own email
    store.transition(rid, st.PROCESSING, run_id="r2")
    later = datetime.now(UTC) + timedelta(seconds=1)
    store.transition(rid, st.COMPLETE, completed_at=later)
    assert [r["id"] for r in store.unemailed([st.COMPLETE], since)] == [rid]
    assert store.claim_email(rid, st.COMPLETE, row["completed_at"], now) is None  # stale read
    assert store.claim_email(rid, st.COMPLETE, later, now) is not None
    assert store.get(rid)["emailed_at"] >= later  # never before the completion it reports


def test_reminders_by_webhook_and_by_email_are_claimed_apart(db_url):
    from datetime import UTC, timedelta

    store = new_store(db_url)
    rid = store.insert(**REQUEST_SAMPLE)
    plain = store.insert(**{**REQUEST_SAMPLE, "notify_email": None})
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=1)
    for request_id in (rid, plain):
        store.transition(request_id, st.QUEUED)
        store.transition(request_id, st.PROCESSING, run_id="r1")
        store.transition(
            request_id, st.COMPLETE, completed_at=now, expires_at=expires_at, video_url="v"
        )
    until = now + timedelta(days=2)
    assert [r["id"] for r in store.expiring(now, until)] == [rid, plain]
    assert [r["id"] for r in store.expiring(now, until, channel="email")] == [rid]
    assert store.claim_reminder(rid, expires_at, now)  # the webhook's
    assert store.claim_reminder(rid, expires_at, now, channel="email", video_url="fresh")
    assert not store.claim_reminder(rid, expires_at, now, channel="email")
    assert store.get(rid)["video_url"] == "fresh"
    assert store.release_reminder(rid, now, channel="email")
    row = store.get(rid)
    assert row["reminder_emailed_at"] is None and row["reminded_at"] is not None
