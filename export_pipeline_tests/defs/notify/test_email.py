"""Emails to `notify_email` (issue 23), through the sensors, against real SMTP servers on
127.0.0.1 (aiosmtpd; `mailserver.py`), on SQLite and PostgreSQL where claims race: the
outcome (complete, failed) and the expiry reminder, each once across repeated and
overlapping ticks; a refusal for good is not retried, one for now is, and so is a server
that is down or never answers, without the tick hanging; STARTTLS with a login; nothing
secret in the logs; the sensors exist only with an SMTP host. Time is the sensors' clock,
moved by hand."""

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from dagster import Definitions, SensorResult, build_sensor_context
from sqlalchemy import update

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.notify import (
    EmailPolicy,
    build_export_email_sensor,
    build_export_expiry_email_sensor,
)
from export_pipeline.defs.notify.reminder import reminder_key
from export_pipeline.defs.notify.webhook import load_cursor, outcome_key
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import utcnow
from export_pipeline.io.appdb.schema import export_requests
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.mail import DELIVERY_HEADER, SmtpConfig
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.defs.notify.test_webhook import Clock
from export_pipeline_tests.io.http.test_download_rebinding import ThrowawayCA
from export_pipeline_tests.mailserver import MailServer, SilentServer, ca_file, free_port

DAY = 24 * 3600.0
TO = "creator@example.com"
FROM = "Video Exports <exports@example.com>"
PASSWORD = "smtp-Pa55-w0rd-never-logged"
SIGNED = "https://s3.example/exports/videos/exp-{id}.mp4?X-Amz-Signature=feedface{id}"


def policy(port: int, **smtp) -> EmailPolicy:
    options = {"security": "none", "timeout_s": 5, **smtp}
    return EmailPolicy.build(
        SmtpConfig("127.0.0.1", port, **options),
        from_address=FROM,
        reply_to="support@example.com",
    )


class Mailer:
    """Both email sensors with their own Definitions, evaluated tick by tick (the outcome
    sensor with its kept cursor)."""

    def __init__(self, settings, email_policy: EmailPolicy, clock: Clock, remind_days=2.0):
        self.outcomes = build_export_email_sensor(email_policy, clock=clock)
        self.reminders = build_export_expiry_email_sensor(
            email_policy, remind_days=remind_days, clock=clock
        )
        resources = {"app_db": AppDatabase(url=settings.app_db.url), "storage": settings.storage}
        self.defs = Definitions(sensors=[self.outcomes, self.reminders], resources=resources)
        self.cursor: str | None = None

    def _evaluate(self, sensor, cursor=None) -> SensorResult:
        context = build_sensor_context(
            cursor=cursor, definitions=self.defs, resources=dict(self.defs.resources)
        )
        result = sensor(context)
        assert isinstance(result, SensorResult)
        return result

    def tick(self) -> str:
        result = self._evaluate(self.outcomes, self.cursor)
        self.cursor = result.cursor
        return result.skip_reason.skip_message

    def remind(self) -> str:
        return self._evaluate(self.reminders).skip_reason.skip_message

    def pending(self) -> dict:
        return {int(k): v for k, v in load_cursor(self.cursor).items()}


def finished(store: RequestStore, status: str, email: str | None = TO, **fields) -> int:
    """A row with `notify_email` that reached `status` as the pipeline would."""
    request_id = store.insert(
        project_id="p1", user_id="u1", resolution="720p", quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)], notify_email=email,
    )  # fmt: skip
    if status in (st.COMPLETE, st.FAILED):
        store.transition(request_id, st.QUEUED)
        store.transition(request_id, st.PROCESSING, run_id="run-1")
    if status == st.COMPLETE:
        fields = {"video_url": SIGNED.format(id=request_id), **fields}
    store.transition(request_id, status, completed_at=fields.pop("completed_at", utcnow()),
                     **fields)  # fmt: skip
    return request_id


def completed(store: RequestStore, expires_at: datetime | None = None, **fields) -> int:
    expires_at = expires_at or utcnow() + timedelta(days=7)
    return finished(
        store, st.COMPLETE, expires_at=expires_at, output_bytes=12_897_484,
        output_duration_s=65.2, **fields,
    )  # fmt: skip


def failed(store: RequestStore, **fields) -> int:
    return finished(
        store, st.FAILED,
        error_message="downloaded_clips failed: clip 3 (scene 7): its source URL has expired "
        "or was removed (HTTP 403); regenerate the clip and export again",
        error_cause="expired_clip_url", **fields,
    )  # fmt: skip


def ids_of(server: MailServer) -> list[int]:
    return [int(m["X-Export-Request"].removeprefix("exp-")) for m in server.messages]


# ---- the outcome


def test_a_completed_export_is_emailed_once_with_its_links_and_details(db_store):
    store, settings = db_store
    request_id = completed(store, poster_url="https://s3.example/p.jpg?X-Amz-Signature=p")
    clock = Clock()
    with MailServer() as server:
        mailer = Mailer(settings, policy(server.port), clock)
        assert mailer.tick() == "email: 1 sent, 0 failed"
        for _ in range(3):
            clock.advance(3600)
            assert mailer.tick() == "email: 0 sent, 0 failed"
    (received,) = server.received
    row = store.get(request_id)
    assert received.rcpt_tos == [TO] and received.mail_from == "exports@example.com"
    message = received.message
    assert (message["To"], message["From"], message["Reply-To"]) == (
        TO, FROM, "support@example.com",
    )  # fmt: skip
    assert message["Subject"] == "Your video is ready"
    assert message[DELIVERY_HEADER] == outcome_key(row)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    video = SIGNED.format(id=request_id)
    assert video in text and "https://s3.example/p.jpg?X-Amz-Signature=p" in text
    assert f'href="{video}"' in html and '<img src="https://s3.example/p.jpg' in html
    for part in (text, html):
        assert "1:05" in part and "12.3 MB" in part
        kept = row["expires_at"]
        assert f"{kept:%A} {kept.day} {kept:%B %Y, %H:%M} UTC" in part
    assert row["emailed_status"] == st.COMPLETE and row["emailed_at"] is not None
    assert mailer.pending() == {}


def test_a_failure_says_what_to_do_and_other_outcomes_are_not_emailed(store, settings, capsys):
    # refused at intake for its address: it cannot be emailed, and is not tried again
    unaddressable = finished(
        store, st.FAILED, email="ann@", error_message="invalid export request: notify_email "
        "must be one email address ...", error_cause="invalid_request",
    )  # fmt: skip
    failure = failed(store)
    canceled = finished(store, st.CANCELED, error_message="canceled", error_cause="canceled")
    rejected = finished(store, st.REJECTED, error_message="limit", error_cause="rate_limited")
    without = completed(store, email=None)
    old = completed(store, completed_at=utcnow() - timedelta(days=2))  # before email was on
    clock = Clock()
    with MailServer() as server:
        assert Mailer(settings, policy(server.port), clock).tick() == "email: 1 sent, 0 failed"
    (message,) = server.messages
    assert ids_of(server) == [failure]
    assert message["Subject"] == "Your video could not be exported"
    for part in (message.get_body(("plain",)).get_content(),
                 message.get_body(("html",)).get_content()):  # fmt: skip
        assert "clip 3 (scene 7): its source URL has expired or was removed" in part
        assert "Regenerate the clip named above in your project, then export again." in part
    for request_id in (canceled, rejected, without, old):
        assert store.get(request_id)["emailed_status"] is None
    assert store.get(unaddressable)["emailed_status"] == st.FAILED  # claimed, never sent
    assert (
        f"email: export request {unaddressable} (failed) not sent: its notify_email is not an "
        "email address (no domain after the @)"
    ) in capsys.readouterr().err


def test_a_new_outcome_of_the_same_request_is_emailed_again(store, settings):
    request_id = failed(store)
    clock = Clock()
    with MailServer() as server:
        mailer = Mailer(settings, policy(server.port), clock)
        mailer.tick()
        # `export-pipeline retry`, then the run completes
        assert store.transition(request_id, st.PENDING)
        assert store.transition(request_id, st.QUEUED)
        assert store.transition(request_id, st.PROCESSING, run_id="run-2")
        assert store.transition(
            request_id, st.COMPLETE, completed_at=utcnow() + timedelta(seconds=1),
            video_url="file:///v.mp4", expires_at=utcnow() + timedelta(days=7), error_message=None,
        )  # fmt: skip
        mailer.tick()
        mailer.tick()
    assert [m["Subject"] for m in server.messages] == [
        "Your video could not be exported", "Your video is ready",
    ]  # fmt: skip


def test_overlapping_ticks_email_each_outcome_once(db_store):
    """Four ticks at once (as from two daemons), each with its own cursor, over 20 rows."""
    store, settings = db_store
    ids = [completed(store) if n % 2 else failed(store) for n in range(20)]
    clock = Clock()
    with MailServer() as server:
        mailers = [Mailer(settings, policy(server.port), clock) for _ in range(4)]
        start = threading.Barrier(len(mailers))
        summaries: list[str] = []

        def run(mailer: Mailer) -> None:
            start.wait()
            summaries.append(mailer.tick())

        threads = [threading.Thread(target=run, args=(m,)) for m in mailers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(ids_of(server)) == ids
    assert sum(int(s.split()[1]) for s in summaries) == 20


def test_a_refusal_for_good_is_not_retried(store, settings, capsys):
    gone = completed(store, email="gone@example.com")
    fine = completed(store)
    clock = Clock()
    refuse = {"gone@example.com": "550 5.1.1 no such mailbox"}
    with MailServer(refuse=refuse) as server:
        mailer = Mailer(settings, policy(server.port), clock)
        assert mailer.tick() == "email: 1 sent, 1 failed"
        for _ in range(3):
            clock.advance(3600)
            assert mailer.tick() == "email: 0 sent, 0 failed"
    assert ids_of(server) == [fine]
    assert store.get(gone)["emailed_status"] == st.COMPLETE  # the claim is kept
    assert mailer.pending() == {}
    logged = capsys.readouterr().err  # the sensor's log (Dagster's, on stderr)
    assert f"the server refused export request {gone} (complete) for good" in logged
    assert "550 5.1.1 no such mailbox" in logged and "not sent again" in logged


def test_a_refusal_for_now_is_retried_after_a_backoff(store, settings):
    request_id = completed(store)
    clock = Clock()
    with MailServer(rcpt_answers=["451 4.7.1 greylisted, try again later"]) as server:
        mailer = Mailer(settings, policy(server.port), clock)
        assert mailer.tick() == "email: 0 sent, 1 failed"
        assert store.get(request_id)["emailed_status"] is None  # given back
        (entry,) = mailer.pending().values()
        assert entry.attempts == 1 and entry.next_at == pytest.approx(clock() + 30)
        assert mailer.tick() == "email: 0 sent, 0 failed"  # waiting for its backoff
        clock.advance(31)
        assert mailer.tick() == "email: 1 sent, 0 failed"
        mailer.tick()
    assert ids_of(server) == [request_id] and mailer.pending() == {}


def test_a_server_that_is_down_is_retried_and_stops_the_tick(store, settings):
    ids = [completed(store) for _ in range(3)]
    port = free_port()
    clock = Clock()
    mailer = Mailer(settings, policy(port), clock)
    summary = mailer.tick()
    assert summary == (
        "email: 0 sent, 1 failed; the SMTP server cannot be used, trying again later"
    )
    assert all(store.get(i)["emailed_status"] is None for i in ids)
    assert list(mailer.pending()) == [ids[0]]
    with MailServer(port=port) as server:
        assert mailer.tick() == "email: 2 sent, 0 failed"  # the first waits for its backoff
        clock.advance(31)
        assert mailer.tick() == "email: 1 sent, 0 failed"
    assert sorted(ids_of(server)) == ids


def test_a_server_that_never_answers_times_out_and_is_retried(store, settings):
    request_id = completed(store)
    clock = Clock()
    with SilentServer() as silent:
        mailer = Mailer(settings, policy(silent.port, timeout_s=0.5), clock)
        started = time.monotonic()
        summary = mailer.tick()
        assert time.monotonic() - started < 5  # the tick does not hang
        port = silent.port
    assert summary.startswith("email: 0 sent, 1 failed; the SMTP server cannot be used")
    assert store.get(request_id)["emailed_status"] is None
    with MailServer(port=port) as server:
        clock.advance(31)
        assert mailer.tick() == "email: 1 sent, 0 failed"
    assert ids_of(server) == [request_id]


def test_starttls_and_a_login_and_nothing_secret_in_the_logs(store, settings, tmp_path, caplog,
                                                              capsys):  # fmt: skip
    """The password, the signed URLs and the creator's address reach the server (the
    email needs them), never a log line: not when a send is refused, nor retried."""
    ca = ThrowawayCA(tmp_path)
    ids = [completed(store), failed(store), completed(store, email="gone@example.com")]
    smtp = {"security": "starttls", "username": "exports", "password": PASSWORD,
            "ca_file": ca_file(ca, tmp_path)}  # fmt: skip
    clock = Clock()
    caplog.set_level("DEBUG")
    reply = f"451 4.3.0 busy, see https://status.example/x?token=abc ({PASSWORD})"
    with MailServer(security="starttls", ca=ca, login=("exports", PASSWORD),
                    rcpt_answers=[reply], refuse={"gone@example.com": "550 gone"}) as server:  # fmt: skip
        mailer = Mailer(settings, policy(server.port, **smtp), clock)
        mailer.tick()
        clock.advance(31)
        mailer.tick()
    assert sorted(ids_of(server)) == ids[:2]
    assert all(r.tls and r.login == "exports" for r in server.received)
    by_id = dict(zip(ids_of(server), server.messages, strict=True))
    assert SIGNED.format(id=ids[0]) in by_id[ids[0]].get_body(("plain",)).get_content()
    logged = caplog.text + "".join(capsys.readouterr())
    assert "busy, see https://status.example/x?[Filtered]" in logged  # what the server said
    for secret in (PASSWORD, "X-Amz-Signature", "feedface", "token=abc", TO, "gone@example"):
        assert secret not in logged, secret
    with pytest.raises(ValueError):
        policy(1, security="none", username="exports", password=PASSWORD)


# ---- the expiry reminder


def expiring(store: RequestStore, status: str, expires_at: datetime, **fields) -> int:
    request_id = completed(store, **fields) if status == st.COMPLETE else finished(
        store, status, video_url="file:///v.mp4", **fields
    )  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(
            update(export_requests)
            .where(export_requests.c.id == request_id)
            .values(expires_at=expires_at, emailed_status=status)
        )
    return request_id


def test_the_reminder_is_emailed_once_at_the_webhooks_time(db_store):
    store, settings = db_store
    t0 = utcnow()
    expires_at = t0 + timedelta(days=7)
    request_id = expiring(store, st.COMPLETE, expires_at)
    clock = Clock()
    with MailServer() as server:
        mailer = Mailer(settings, policy(server.port), clock, remind_days=2)
        clock.now = t0.timestamp()
        assert mailer.remind() == "expiry email: 0 sent, 0 failed"
        clock.now = expires_at.timestamp() - 2 * DAY - 60  # a minute early
        assert mailer.remind() == "expiry email: 0 sent, 0 failed"
        clock.now = expires_at.timestamp() - 2 * DAY  # day 5 of 7
        assert mailer.remind() == "expiry email: 1 sent, 0 failed"
        for _ in range(3):
            clock.advance(0.5 * DAY)
            mailer.remind()
    (message,) = server.messages
    row = store.get(request_id)
    assert (
        message["Subject"] == f"Your video will be deleted on {expires_at.day} {expires_at:%B %Y}"
    )
    assert message[DELIVERY_HEADER] == reminder_key(row)
    text = message.get_body(("plain",)).get_content()
    assert "(2 days from now)" in text and SIGNED.format(id=request_id) in text
    assert row["reminder_emailed_at"] is not None and row["reminded_at"] is None  # webhook's own


def test_no_reminder_email_for_failed_expired_past_or_unaddressed_exports(store, settings):
    t0 = utcnow()
    soon = t0 + timedelta(days=1)
    failure = expiring(store, st.FAILED, soon, error_message="x", error_cause="ffmpeg")
    expired = expiring(store, st.COMPLETE, soon)
    store.transition(expired, st.EXPIRED, video_url=None)
    past = expiring(store, st.COMPLETE, t0 - timedelta(minutes=1))
    unaddressed = expiring(store, st.COMPLETE, soon, email=None)
    due = expiring(store, st.COMPLETE, soon)
    clock = Clock()
    clock.now = t0.timestamp()
    with MailServer() as server:
        mailer = Mailer(settings, policy(server.port), clock)
        mailer.remind()
        mailer.remind()
    assert ids_of(server) == [due]
    for request_id in (failure, expired, past, unaddressed):
        assert store.get(request_id)["reminder_emailed_at"] is None


def test_a_reminder_refused_for_now_is_sent_next_tick_and_one_refused_for_good_is_not(
    store, settings
):
    t0 = utcnow()
    first = expiring(store, st.COMPLETE, t0 + timedelta(days=1))
    gone = expiring(store, st.COMPLETE, t0 + timedelta(days=1, hours=1), email="gone@example.com")
    clock = Clock()
    clock.now = t0.timestamp()
    answers = {"rcpt_answers": ["452 4.2.2 mailbox full"], "refuse": {"gone@example.com": "550 x"}}
    with MailServer(**answers) as server:
        mailer = Mailer(settings, policy(server.port), clock)
        assert mailer.remind() == "expiry email: 0 sent, 2 failed"
        assert store.get(first)["reminder_emailed_at"] is None  # given back
        assert store.get(gone)["reminder_emailed_at"] is not None  # kept
        clock.advance(900)
        assert mailer.remind() == "expiry email: 1 sent, 0 failed"
        assert mailer.remind() == "expiry email: 0 sent, 0 failed"
    assert ids_of(server) == [first]


def test_the_reminder_email_carries_urls_signed_now(s3_settings, store):
    settings = s3_settings.replace(storage={"url_expiry_seconds": 3600})
    storage = settings.storage.open()
    t0 = utcnow()
    request_id = expiring(store, st.COMPLETE, t0 + timedelta(days=1), poster_url="https://x/p.jpg")
    storage.put_bytes(f"videos/exp-{request_id}.mp4", b"the video")
    storage.put_bytes(f"videos/exp-{request_id}.jpg", b"the poster")
    clock = Clock()
    clock.now = t0.timestamp()
    with MailServer() as server:
        assert Mailer(settings, policy(server.port), clock).remind().startswith("expiry email: 1")
    html = server.messages[0].get_body(("html",)).get_content()
    row = store.get(request_id)
    assert row["video_url"] != SIGNED.format(id=request_id)
    assert f'href="{row["video_url"].replace("&", "&amp;")}"' in html
    with httpx.Client() as client:
        assert client.get(row["video_url"]).content == b"the video"
        assert client.get(row["poster_url"]).content == b"the poster"


# ---- configuration


def test_the_email_sensors_run_only_with_an_smtp_host_and_need_a_from(settings, monkeypatch):
    names = {s.name for s in build_definitions(settings).sensors}
    assert not names & {"export_email_sensor", "export_expiry_email_sensor"}
    monkeypatch.setenv("EXPORT_SMTP_PASSWORD", PASSWORD)  # a secret from the process env
    from export_pipeline.defs.settings import Email

    email = Email.from_env(
        {"EXPORT_SMTP_HOST": "smtp.example.com", "EXPORT_EMAIL_FROM": FROM,
         "EXPORT_SMTP_USERNAME": "exports", "EXPORT_SMTP_PASSWORD": PASSWORD,
         "EXPORT_EMAIL_INTERVAL_S": "20"}
    )  # fmt: skip
    configured = settings.replace(email=dict(email), webhook={"reminder_days": 3})
    defs = build_definitions(configured)
    assert "export_expiry_reminder_sensor" not in {s.name for s in defs.sensors}  # no webhook
    outcome = defs.resolve_sensor_def("export_email_sensor")
    reminder = defs.resolve_sensor_def("export_expiry_email_sensor")
    assert outcome.minimum_interval_seconds == 20 and reminder.minimum_interval_seconds == 900
    assert "3 days before" in reminder.description
    from export_pipeline.defs.notify.definitions import email_policy

    built = email_policy(configured.email)
    assert built.smtp.password == PASSWORD  # the value, not the variable's name
    assert (built.smtp.server_port, built.sender) == (587, FROM)
    with pytest.raises(ValueError, match="EXPORT_EMAIL_FROM"):
        build_definitions(settings.replace(email={"host": "smtp.example.com"}))
    with pytest.raises(ValueError, match="From address"):
        email_policy(email.model_copy(update={"from_address": "nobody"}))
    with pytest.raises(ValueError, match="does not exist"):
        build_definitions(configured.replace(email={"templates_dir": "/nonexistent/templates"}))


@pytest.mark.e2e
def test_a_real_export_is_emailed_with_its_video_and_poster(settings, store, instance, cdn):
    defs = build_definitions(settings)
    request_id = store.insert(
        project_id="p1", user_id="u1", resolution="720p", quality="low",
        clips=[clip(cdn.url("landscape.mp4"), 1)], notify_email=TO,
    )  # fmt: skip
    with store.engine.begin() as conn:  # left by an earlier completion: publishing clears it
        conn.execute(
            update(export_requests)
            .where(export_requests.c.id == request_id)
            .values(reminder_emailed_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
    (result,) = run_requested(instance, defs, tick)
    assert result.success
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["reminder_emailed_at"] is None
    with MailServer() as server:
        assert Mailer(settings, policy(server.port), Clock()).tick() == "email: 1 sent, 0 failed"
    text = server.messages[0].get_body(("plain",)).get_content()
    assert row["video_url"] in text and row["poster_url"] in text
    assert "Size:        " in text and "Length:      0:02" in text
