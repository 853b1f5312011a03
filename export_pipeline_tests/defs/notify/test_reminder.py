"""The `expiring` reminder (issue 14) against a real HTTP receiver on 127.0.0.1 that checks
signatures as the app would, on SQLite and PostgreSQL: not before its time, once at or
after it (across repeated and overlapping ticks), never for failed or expired exports,
retried after a failure, not after a refusal. Time is the sensor's clock, moved by hand."""

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from dagster import Definitions, SensorResult, build_sensor_context
from sqlalchemy import update

from export_pipeline.definitions import build_definitions
from export_pipeline.defs.notify import DELIVERY_HEADER, build_export_expiry_reminder_sensor
from export_pipeline.defs.notify.reminder import REMINDER_FIELDS, reminder_key
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.io.appdb.schema import export_requests
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.defs.notify.test_webhook import (
    SECRET,
    Clock,
    Receiver,
    dead_url,
    finished,
)

DAY = 24 * 3600.0


class Reminder:
    """The sensor with its own Definitions, evaluated tick by tick."""

    def __init__(self, settings, url: str, clock: Clock, **options):
        self.sensor = build_export_expiry_reminder_sensor(
            url, SECRET, clock=clock, timeout_s=5, **options
        )
        resources = {
            "app_db": AppDatabase(url=settings.app_db.url),
            "storage": settings.storage,
        }
        self.defs = Definitions(sensors=[self.sensor], resources=resources)

    def tick(self) -> str:
        context = build_sensor_context(definitions=self.defs, resources=dict(self.defs.resources))
        result = self.sensor(context)
        assert isinstance(result, SensorResult)
        return result.skip_reason.skip_message


def expiring(store: RequestStore, status: str, expires_at: datetime, **fields) -> int:
    """A row that reached `status`, with the `expires_at` its completion wrote."""
    request_id = finished(store, status, video_url="https://cdn.example/v.mp4", **fields)
    with store.engine.begin() as conn:
        conn.execute(
            update(export_requests)
            .where(export_requests.c.id == request_id)
            .values(expires_at=expires_at)
        )
    return request_id


def at(moment: datetime) -> float:
    return moment.timestamp()


def test_the_reminder_is_sent_once_two_days_before(db_store):
    store, settings = db_store
    t0 = utcnow()
    expires_at = t0 + timedelta(days=7)
    request_id = expiring(store, st.COMPLETE, expires_at, poster_url="https://cdn.example/p.jpg")
    clock = Clock()
    with Receiver(clock) as receiver:
        reminder = Reminder(settings, receiver.url, clock)
        clock.now = at(t0)
        assert reminder.tick() == "reminder: 0 delivered, 0 failed"
        clock.now = at(expires_at) - 2 * DAY - 60  # a minute early
        reminder.tick()
        assert receiver.deliveries == []
        clock.now = at(expires_at) - 2 * DAY  # day 5 of 7
        assert reminder.tick() == "reminder: 1 delivered, 0 failed"
        for _ in range(3):  # later ticks, up to the deletion
            clock.advance(0.5 * DAY)
            reminder.tick()
        (delivery,) = receiver.deliveries
    assert delivery["verified"]
    document = delivery["json"]
    assert tuple(document) == REMINDER_FIELDS
    row = store.get(request_id)
    assert document == {
        "event": "expiring",
        "request_id": request_id,
        "project_id": "p1",
        "user_id": "u1",
        "status": "complete",
        "video_url": "https://cdn.example/v.mp4",
        "poster_url": "https://cdn.example/p.jpg",
        "completed_at": as_utc(row["completed_at"]).isoformat(timespec="seconds")[:19] + "Z",
        "expires_at": expires_at.isoformat(timespec="seconds")[:19] + "Z",
    }
    assert delivery["headers"][DELIVERY_HEADER] == reminder_key(row)
    assert reminder_key(row).startswith(f"exp-{request_id}:expiring:")
    assert as_utc(row["reminded_at"]) == datetime.fromtimestamp(at(expires_at) - 2 * DAY, UTC)


def test_no_reminder_for_failed_expired_or_past_exports(db_store):
    store, settings = db_store
    t0 = utcnow()
    soon = t0 + timedelta(days=1)
    failed = expiring(
        store, st.FAILED, soon, error_message="encoded_video failed", error_cause="ffmpeg"
    )
    canceled = expiring(store, st.CANCELED, soon)
    expired_id = expiring(store, st.COMPLETE, soon)
    store.transition(expired_id, st.EXPIRED, video_url=None)
    past = expiring(store, st.COMPLETE, t0 - timedelta(minutes=1))  # not swept yet
    due = expiring(store, st.COMPLETE, soon)
    clock = Clock()
    clock.now = at(t0)
    with Receiver(clock) as receiver:
        reminder = Reminder(settings, receiver.url, clock)
        reminder.tick()
        reminder.tick()
    assert [d["json"]["request_id"] for d in receiver.deliveries] == [due]
    for request_id in (failed, canceled, expired_id, past):
        assert store.get(request_id)["reminded_at"] is None


def test_a_failed_delivery_is_tried_again_and_a_refusal_is_not(db_store):
    store, settings = db_store
    t0 = utcnow()
    first = expiring(store, st.COMPLETE, t0 + timedelta(days=1))
    second = expiring(store, st.COMPLETE, t0 + timedelta(days=1, hours=1))
    clock = Clock()
    clock.now = at(t0)
    # first: 500 then accepted; second: 410 (the app refuses it)
    with Receiver(clock, answers=[(500, {}), (410, {})]) as receiver:
        reminder = Reminder(settings, receiver.url, clock)
        assert reminder.tick() == "reminder: 0 delivered, 2 failed"
        assert store.get(first)["reminded_at"] is None  # given back
        assert store.get(second)["reminded_at"] is not None  # kept: not sent again
        clock.advance(900)
        assert reminder.tick() == "reminder: 1 delivered, 0 failed"
        reminder.tick()
    ids = [d["json"]["request_id"] for d in receiver.deliveries]
    assert ids == [first, second, first]
    assert all(d["verified"] for d in receiver.deliveries)
    assert (
        receiver.deliveries[0]["headers"][DELIVERY_HEADER]
        == (receiver.deliveries[2]["headers"][DELIVERY_HEADER])
    )  # the same document: the app can tell it already has it


def test_an_unreachable_receiver_stops_the_tick_and_keeps_every_reminder(db_store):
    store, settings = db_store
    t0 = utcnow()
    ids = [expiring(store, st.COMPLETE, t0 + timedelta(hours=h)) for h in (1, 2, 3)]
    clock = Clock()
    clock.now = at(t0)
    summary = Reminder(settings, dead_url(), clock).tick()
    assert summary.startswith("reminder: 0 delivered, 1 failed;") and "unreachable" in summary
    assert all(store.get(i)["reminded_at"] is None for i in ids)


def test_overlapping_ticks_send_each_reminder_once(db_store):
    """Four ticks at once (as from two daemons), over 20 rows: each sent exactly once."""
    store, settings = db_store
    t0 = utcnow()
    ids = [expiring(store, st.COMPLETE, t0 + timedelta(hours=1 + n)) for n in range(20)]
    clock = Clock()
    clock.now = at(t0)
    with Receiver(clock) as receiver:
        reminders = [Reminder(settings, receiver.url, clock) for _ in range(4)]
        start = threading.Barrier(len(reminders))
        summaries: list[str] = []

        def run(reminder: Reminder) -> None:
            start.wait()
            summaries.append(reminder.tick())

        threads = [threading.Thread(target=run, args=(r,)) for r in reminders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    sent = sorted(d["json"]["request_id"] for d in receiver.deliveries)
    assert sent == ids
    assert sum(int(s.split()[1]) for s in summaries) == 20


def test_re_export_earns_a_new_reminder(db_store):
    store, settings = db_store
    t0 = utcnow()
    request_id = expiring(store, st.COMPLETE, t0 + timedelta(days=1))
    clock = Clock()
    clock.now = at(t0)
    with Receiver(clock) as receiver:
        reminder = Reminder(settings, receiver.url, clock)
        reminder.tick()
        # a re-export completes: new expires_at, reminded_at reset (published_video does so)
        assert store.transition(request_id, st.PROCESSING, run_id="run-2")
        assert store.transition(
            request_id,
            st.COMPLETE,
            completed_at=t0 + timedelta(days=1),
            expires_at=t0 + timedelta(days=8),
            reminded_at=None,
        )
        reminder.tick()
        clock.now = at(t0 + timedelta(days=6, hours=1))
        reminder.tick()
        reminder.tick()
    keys = [d["headers"][DELIVERY_HEADER] for d in receiver.deliveries]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_the_reminder_carries_urls_signed_now(s3_settings, store):
    """On S3 the completion's presigned URL lives 7 days at most, less than a 30-day plan:
    the reminder (and the row) get URLs signed at reminder time, which open."""
    settings = s3_settings.replace(storage={"url_expiry_seconds": 3600})
    storage = settings.storage.open()
    t0 = utcnow()
    request_id = expiring(
        store, st.COMPLETE, t0 + timedelta(days=1), poster_url="https://stale.example/p.jpg"
    )
    storage.put_bytes(f"videos/exp-{request_id}.mp4", b"the video")
    storage.put_bytes(f"videos/exp-{request_id}.jpg", b"the poster")
    clock = Clock()
    clock.now = at(t0)
    with Receiver(clock) as receiver:
        Reminder(settings, receiver.url, clock).tick()
    (delivery,) = receiver.deliveries
    document, row = delivery["json"], store.get(request_id)
    assert delivery["verified"]
    assert document["video_url"] != "https://cdn.example/v.mp4"
    assert (row["video_url"], row["poster_url"]) == (document["video_url"], document["poster_url"])
    with httpx.Client() as client:
        assert client.get(document["video_url"]).content == b"the video"
        assert client.get(document["poster_url"]).content == b"the poster"


def test_the_reminder_needs_a_url_a_secret_and_a_lead_time():
    with pytest.raises(ValueError, match="http"):
        build_export_expiry_reminder_sensor("ftp://x", SECRET)
    with pytest.raises(ValueError, match="secret"):
        build_export_expiry_reminder_sensor("http://127.0.0.1:9/hook", "")
    with pytest.raises(ValueError, match="remind_days"):
        build_export_expiry_reminder_sensor("http://127.0.0.1:9/hook", SECRET, remind_days=0)


def test_definitions_run_the_reminder_with_the_webhook(settings):
    assert "export_expiry_reminder_sensor" not in {
        s.name for s in build_definitions(settings).sensors
    }
    defs = build_definitions(
        settings.replace(
            webhook={"url": "http://127.0.0.1:9/hook", "secret": SECRET, "reminder_days": 3}
        )
    )
    sensor = defs.resolve_sensor_def("export_expiry_reminder_sensor")
    assert sensor.minimum_interval_seconds == 900
    assert "3 days before" in sensor.description
