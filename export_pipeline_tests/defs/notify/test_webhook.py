"""The completion webhook: signing, the document, and the sensor against a real HTTP receiver
on 127.0.0.1 that checks signatures as the app would (success, retries with backoff across
ticks, permanent refusal, a receiver that is down); exports complete regardless."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import Definitions, SensorResult, build_sensor_context

from export_pipeline.defs.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_export_webhook_sensor,
    payload,
    sign,
    verify,
)
from export_pipeline.defs.notify.webhook import (
    PAYLOAD_FIELDS,
    WebhookPolicy,
    backoff_s,
    classify,
    dump_cursor,
    load_cursor,
    outcome_key,
)
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

SECRET = "whsec_test_0123456789"

# ---- signing


def test_sign_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"request_id":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"
    assert sign(SECRET, "1700000000", body.decode()) == f"sha256={expected}"


T0 = 1_700_000_000
BODY = b'{"request_id":7,"status":"complete"}'
GOOD = sign(SECRET, T0, BODY)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "signature", "now", "ok"),
    [
        pytest.param(SECRET, str(T0), BODY, GOOD, T0, True, id="valid"),
        pytest.param(SECRET, str(T0), BODY, GOOD, T0 + 300, True, id="5-minutes-old"),
        pytest.param(SECRET, str(T0), BODY, GOOD, T0 + 301, False, id="too-old-replay"),
        pytest.param(SECRET, str(T0), BODY, GOOD, T0 - 301, False, id="from-the-future"),
        pytest.param(SECRET, str(T0), BODY + b" ", GOOD, T0, False, id="body-changed"),
        pytest.param(SECRET, str(T0 + 1), BODY, GOOD, T0, False, id="timestamp-changed"),
        pytest.param("other", str(T0), BODY, GOOD, T0, False, id="wrong-secret"),
        pytest.param(
            SECRET, str(T0), BODY, GOOD.removeprefix("sha256="), T0, False, id="no-prefix"
        ),
        pytest.param(SECRET, "17e8", BODY, GOOD, T0, False, id="not-an-integer"),
        pytest.param(SECRET, None, BODY, GOOD, T0, False, id="no-timestamp"),
        pytest.param(SECRET, str(T0), BODY, None, T0, False, id="no-signature"),
        pytest.param(SECRET, str(T0), BODY, "sha256=é", T0, False, id="non-ascii-signature"),
    ],
)
def test_verify(secret, timestamp, body, signature, now, ok):
    assert verify(secret, timestamp, body, signature, now) is ok


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, "ok"),
        (202, "ok"),
        (204, "ok"),
        (301, "retry"),
        (400, "give_up"),
        (401, "give_up"),
        (404, "give_up"),
        (410, "give_up"),
        (422, "give_up"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
    ],
)
def test_classify(code, verdict):
    assert classify(code) == verdict


@pytest.mark.parametrize(
    ("attempts", "wait"), [(1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (20, 3600)]
)
def test_backoff(attempts, wait):
    assert backoff_s(attempts, 30, 3600) == wait


def test_payload_of_a_row():
    row = {
        "id": 42,
        "project_id": "proj-1",
        "user_id": "user-9",
        "status": "complete",
        "video_url": "https://s3/videos/exp-42.mp4?sig",
        "poster_url": "https://s3/videos/exp-42.jpg?sig",
        "error_message": None,
        "output_duration_s": 12.5,
        "output_bytes": 1234567,
        "completed_at": datetime(2026, 11, 23, 10, 32, 5, 123456),  # SQLite: naive UTC
        "clips": "[...]",
    }
    document = payload(row)
    assert tuple(document) == PAYLOAD_FIELDS
    assert document["request_id"] == 42 and document["completed_at"] == "2026-11-23T10:32:05Z"
    assert outcome_key(row) == "exp-42:complete:2026-11-23T10:32:05.123456Z"


def test_a_broken_cursor_starts_afresh():
    assert load_cursor("not json") == {} and load_cursor('{"pending": [1]}') == {}
    assert load_cursor(None) == {}


def test_the_webhook_needs_a_url_and_a_secret():
    for url in ("", "ftp://app.example/hook", "app.example/hook"):
        with pytest.raises(ValueError, match="http"):
            WebhookPolicy(url, SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookPolicy("http://127.0.0.1:9/hook", "")


# ---- a receiver standing in for the app


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """An HTTP server on 127.0.0.1 that verifies every delivery like the app would, and
    answers with the scripted (status, headers) answers in order, then 200."""

    def __init__(self, clock: Clock, answers: list[tuple[int, dict[str, str]]] | None = None):
        self.clock = clock
        self.answers = list(answers or [])
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - stdlib naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.deliveries.append(
                    {
                        "headers": dict(self.headers),
                        "body": body,
                        "json": json.loads(body),
                        "verified": verify(
                            SECRET,
                            self.headers.get(TIMESTAMP_HEADER),
                            body,
                            self.headers.get(SIGNATURE_HEADER),
                            now=receiver.clock(),
                        ),
                    }
                )
                code, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                reply = b"nope" if code >= 300 else b"ok"
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/export"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def dead_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/export"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver(clock) -> Iterator[Receiver]:
    with Receiver(clock) as server:
        yield server


class Webhook:
    """The sensor with its own Definitions, evaluated tick by tick with a kept cursor."""

    def __init__(self, settings, instance, url: str, clock: Clock, **options):
        # `instance` may be None: the sensor only needs the app database.
        interval = {k: options.pop(k) for k in ("interval_s",) if k in options}
        policy = WebhookPolicy(url, SECRET, backoff_base_s=10, timeout_s=5, **options)
        self.sensor = build_export_webhook_sensor(policy, clock=clock, **interval)
        self.defs = Definitions(
            sensors=[self.sensor], resources={"app_db": AppDatabase(url=settings.app_db.url)}
        )
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> SensorResult:
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources=dict(self.defs.resources),
        )
        result = self.sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result

    def pending(self) -> dict:
        return {int(k): v for k, v in load_cursor(self.cursor).items()}


def finished(store: RequestStore, status: str, user: str = "u1", **fields) -> int:
    """A row that reached `status` through the state machine, as the pipeline would."""
    request_id = store.insert(
        project_id="p1",
        user_id=user,
        resolution="720p",
        quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )
    if status == st.COMPLETE:
        store.transition(request_id, st.QUEUED)
        store.transition(request_id, st.PROCESSING, run_id="run-1")
    store.transition(request_id, status, completed_at=utcnow(), **fields)
    return request_id


# ---- through real exports


@pytest.mark.e2e
def test_a_finished_export_is_posted_signed_once(settings, store, instance, cdn, clock, receiver):
    request_id, result, _ = export(
        settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)], project_id="proj-1"
    )
    assert result.success
    hook = Webhook(settings, instance, receiver.url, clock)
    summary = hook.tick()
    assert "1 delivered" in summary.skip_reason.skip_message

    (delivery,) = receiver.deliveries
    assert delivery["verified"]
    row = store.get(request_id)
    document = delivery["json"]
    assert tuple(document) == PAYLOAD_FIELDS
    assert document["request_id"] == request_id and document["status"] == st.COMPLETE
    assert (document["project_id"], document["user_id"]) == ("proj-1", "creator")
    assert document["video_url"] == row["video_url"] and document["poster_url"] == row["poster_url"]
    assert document["poster_url"].endswith(f"exp-{request_id}.jpg")
    assert document["output_bytes"] == row["output_bytes"] and document["error_message"] is None
    assert document["output_duration_s"] == pytest.approx(row["output_duration_s"])
    assert document["completed_at"].endswith("Z")
    headers = delivery["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers[DELIVERY_HEADER] == outcome_key(row)
    assert abs(int(headers[TIMESTAMP_HEADER]) - clock()) <= 1

    assert row["notified_status"] == st.COMPLETE and row["notified_at"] is not None
    assert row["status"] == st.COMPLETE
    hook.tick()
    clock.advance(3600)
    hook.tick()
    assert len(receiver.deliveries) == 1  # notified once
    assert hook.pending() == {}


@pytest.mark.e2e
def test_exports_complete_while_the_receiver_is_down_and_it_gives_up_later(
    settings, store, instance, cdn, clock, capsys
):
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success and store.get(request_id)["status"] == st.COMPLETE

    hook = Webhook(settings, instance, dead_url(), clock, max_attempts=3)
    waits = []
    for attempt in (1, 2, 3):
        summary = hook.tick().skip_reason.skip_message
        assert "unreachable" in summary
        entry = hook.pending()[request_id]
        assert entry.attempts == attempt
        waits.append(entry.next_at - clock())
        hook.tick()  # too early: nothing tried, nothing counted
        assert hook.pending()[request_id].attempts == attempt
        clock.advance(entry.next_at - clock())
    assert waits == [10, 20, 40]
    assert hook.pending()[request_id].gave_up
    assert (
        f"giving up on export request {request_id} (complete) after attempt 3"
        in capsys.readouterr().err
    )
    clock.advance(6 * 3600)
    hook.tick()
    assert hook.pending()[request_id].attempts == 3  # given up for good
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["notified_status"] is None


# ---- retries, refusals, outcomes (rows finished directly: no need for a video)


def test_a_receiver_that_fails_twice_then_accepts(settings, store, clock):
    request_id = finished(
        store, st.FAILED, error_message="encoded_video failed: boom", error_cause="ffmpeg"
    )
    answers = [(500, {}), (503, {"Retry-After": "25"})]
    with Receiver(clock, answers) as receiver:
        hook = Webhook(settings, None, receiver.url, clock)
        hook.tick()
        assert hook.pending()[request_id].attempts == 1
        clock.advance(5)
        hook.tick()  # backing off
        assert len(receiver.deliveries) == 1
        clock.advance(5)
        hook.tick()
        entry = hook.pending()[request_id]
        assert entry.attempts == 2 and entry.next_at == clock() + 25  # Retry-After > 20 s
        clock.advance(25)
        hook.tick()
    assert len(receiver.deliveries) == 3 and all(d["verified"] for d in receiver.deliveries)
    assert {d["headers"][DELIVERY_HEADER] for d in receiver.deliveries} == {
        outcome_key(store.get(request_id))
    }  # the same delivery id on every retry
    assert receiver.deliveries[-1]["json"]["error_message"] == "encoded_video failed: boom"
    assert store.get(request_id)["notified_status"] == st.FAILED
    assert hook.pending() == {}


def test_a_permanent_refusal_is_not_retried(settings, store, clock):
    refused = finished(store, st.CANCELED)
    with Receiver(clock, [(400, {})]) as receiver:
        hook = Webhook(settings, None, receiver.url, clock)
        summary = hook.tick().skip_reason.skip_message
        assert "0 delivered, 1 failed" in summary
        assert hook.pending()[refused].gave_up
        clock.advance(3 * 3600)
        ok = finished(
            store, st.REJECTED, error_message="rate limit: ...", error_cause="rate_limited"
        )
        hook.tick()
    assert [d["json"]["request_id"] for d in receiver.deliveries] == [refused, ok]
    assert store.get(refused)["notified_status"] is None
    assert store.get(ok)["notified_status"] == st.REJECTED
    assert hook.pending()[refused].attempts == 1


def test_408_and_429_are_retried(settings, store, clock):
    request_id = finished(store, st.CANCELED)
    with Receiver(clock, [(408, {}), (429, {"Retry-After": "120"})]) as receiver:
        hook = Webhook(settings, None, receiver.url, clock)
        hook.tick()
        clock.advance(10)
        hook.tick()
        assert hook.pending()[request_id].next_at == clock() + 120
        clock.advance(120)
        hook.tick()
    assert len(receiver.deliveries) == 3
    assert store.get(request_id)["notified_status"] == st.CANCELED


def test_an_unreachable_receiver_is_not_hammered_row_after_row(settings, store, clock):
    ids = [finished(store, st.FAILED) for _ in range(3)]
    hook = Webhook(settings, None, dead_url(), clock)
    hook.tick()
    assert list(hook.pending()) == [ids[0]]  # the tick stopped at the first refusal
    hook.tick()
    assert list(hook.pending()) == ids[:2]  # the first waits; the next one is tried


def test_a_new_outcome_is_notified_again(settings, store, clock, receiver):
    request_id = finished(store, st.COMPLETE, video_url="file:///v/exp.mp4")
    hook = Webhook(settings, None, receiver.url, clock)
    hook.tick()
    # Re-exported (re-execution or backfill): the same status, a later completion.
    store.transition(request_id, st.PROCESSING, run_id="run-2")
    hook.tick()  # not finished: nothing to say
    store.transition(request_id, st.COMPLETE, completed_at=utcnow() + timedelta(seconds=1))
    hook.tick()
    hook.tick()
    keys = [d["headers"][DELIVERY_HEADER] for d in receiver.deliveries]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert store.get(request_id)["notified_status"] == st.COMPLETE


def test_only_recent_outcomes_are_sent_when_the_webhook_is_turned_on(
    settings, store, clock, receiver
):
    old = finished(store, st.FAILED)
    store.transition(old, st.QUEUED)
    store.transition(old, st.FAILED, completed_at=utcnow() - timedelta(days=3))
    new = finished(store, st.FAILED)
    Webhook(settings, None, receiver.url, clock).tick()
    assert [d["json"]["request_id"] for d in receiver.deliveries] == [new]


def test_given_up_entries_are_forgotten_after_the_window(settings, store, clock):
    request_id = finished(store, st.CANCELED)
    with Receiver(clock, [(404, {})]) as receiver:
        hook = Webhook(settings, None, receiver.url, clock, max_age_s=3600)
        hook.tick()
        assert hook.pending()[request_id].gave_up
        clock.advance(2 * 3600)
        hook.tick()
    assert hook.pending() == {} and len(receiver.deliveries) == 1
    assert json.loads(dump_cursor({})) == {"v": 1, "pending": {}}


# ---- the store queries, on SQLite and PostgreSQL


def test_unnotified_and_mark_notified(db_url):
    store = RequestStore.from_url(db_url)
    store.create_schema()
    since = datetime.now(UTC) - timedelta(hours=1)
    done = finished(store, st.COMPLETE)
    failed = finished(store, st.FAILED)
    finished(store, st.QUEUED)  # not finished
    statuses = (st.COMPLETE, st.FAILED)
    assert [r["id"] for r in store.unnotified(statuses, since)] == [done, failed]
    row = store.get(done)
    assert store.mark_notified(done, st.COMPLETE, row["completed_at"])
    assert [r["id"] for r in store.unnotified(statuses, since)] == [failed]
    assert not store.mark_notified(failed, st.COMPLETE, None)  # it is failed, not complete
    # A later completion of the same row, after the notification: to be notified again.
    store.transition(done, st.PROCESSING, run_id="run-2")
    store.transition(done, st.COMPLETE, completed_at=utcnow() + timedelta(seconds=1))
    assert not store.mark_notified(done, st.COMPLETE, row["completed_at"])  # stale outcome
    assert [r["id"] for r in store.unnotified(statuses, since)] == [done, failed]
    assert store.unnotified(statuses, datetime.now(UTC) + timedelta(hours=1)) == []


def test_a_secret_from_the_process_environment_signs_with_its_value(
    settings, store, clock, receiver, monkeypatch
):
    """The daemon reads EXPORT_WEBHOOK_SECRET from its environment, where settings keep a
    secret as an EnvVar (the UI shows its name): the webhook must sign with the value, not
    with the variable's name."""
    from export_pipeline.definitions import build_definitions
    from export_pipeline.defs.settings import Settings

    monkeypatch.setenv("EXPORT_PIPELINE_HOME", str(settings.home))
    monkeypatch.setenv("EXPORT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("EXPORT_WEBHOOK_SECRET", SECRET)
    defs = build_definitions(Settings.from_env())
    finished(store, st.COMPLETE, video_url="file:///v.mp4")
    sensor = defs.resolve_sensor_def("export_webhook_sensor")
    sensor(build_sensor_context(definitions=defs, resources=dict(defs.resources)))
    (delivery,) = receiver.deliveries
    assert delivery["verified"]
