"""Error tracking: the scrubber, adversarially, and Sentry events from real failing exports
captured by a loopback DSN endpoint (a real HTTP server speaking Sentry's envelope protocol),
with the step's tags, FFmpeg's stderr tail, and no secrets or query strings."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from export_pipeline.domain import status as st
from export_pipeline.observability.errors import (
    before_send,
    failure_context,
    init_error_tracking,
    report_step_exception,
)
from export_pipeline.observability.scrub import FILTERED, is_secret_key, scrub, scrub_text
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

SECRETS = (
    "X-Amz-Signature",
    "deadbeefcafe",
    "hunter2",
    "s3cr3t-cdn-token",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI",
    "xoxb-123456789012",
    "whsec_live_abcdef",
    "sentrykey123",
    "pd-routing-0123",
    "pgpass-42",
)


# ---- the scrubber


@pytest.mark.parametrize(
    "text, kept, gone",
    [
        ("GET https://cdn.example/a.mp4?X-Amz-Signature=deadbeefcafe&X-Amz-Expires=60 failed",
         "https://cdn.example/a.mp4?[Filtered] failed", "deadbeefcafe"),
        ("clip https://cdn.example/a.mp4?token=s3cr3t-cdn-token#t=3", "https://cdn.example/a.mp4?[Filtered]", "s3cr3t"),
        ("'https://cdn.example/x.mp4?sig=abc' and \"http://h/y?z=1\"", "https://cdn.example/x.mp4?[Filtered]'", "sig=abc"),
        ("postgresql+psycopg2://export:pgpass-42@db:5432/app", "postgresql+psycopg2://db:5432/app", "pgpass-42"),
        ("SENTRY_DSN=https://sentrykey123@o1.ingest.sentry.io/5", "SENTRY_DSN=[Filtered]", "sentrykey123"),
        ("dsn https://sentrykey123@o1.ingest.sentry.io/5", "https://o1.ingest.sentry.io/5", "sentrykey123"),
        ("aws_access_key_id AKIAIOSFODNN7EXAMPLE in use", "aws_access_key_id [Filtered] in use", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=[Filtered]", "wJalr"),
        ("Authorization: Bearer xoxb-123456789012-abcdefABCDEF", "Authorization: Bearer [Filtered]", "xoxb"),
        ("token xoxb-123456789012-abcdef posted", "[Filtered]", "xoxb-123"),
        ("password=hunter2; user=bob", "password=[Filtered]; user=bob", "hunter2"),
        ('{"password": "hunter2", "n": 1}', '"password": [Filtered]', "hunter2"),
        ("{'api_key': 'xoxb-0-abc'}", "'api_key': [Filtered]", "abc"),
        ("EXPORT_WEBHOOK_SECRET: whsec_live_abcdef", "EXPORT_WEBHOOK_SECRET: [Filtered]", "whsec"),
        ("routing_key=pd-routing-0123 sent", "routing_key=[Filtered] sent", "pd-routing"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", FILTERED, "MIIEow"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop", "jwt [Filtered]", "eyJhbGci"),
        ("exp-42 failed at 12 %: nothing to hide", "exp-42 failed at 12 %: nothing to hide", "[Filtered]"),
        ("file:///tmp/x.mp4 and https://cdn.example/plain.mp4", "https://cdn.example/plain.mp4", "[Filtered]"),
    ],
)  # fmt: skip
def test_scrub_text(text, kept, gone):
    out = scrub_text(text)
    assert kept in out
    assert gone not in out


@pytest.mark.parametrize(
    "key, secret",
    [("password", True), ("DB_PASSWORD", True), ("x-api-key", True), ("apiKey", True),
     ("aws_secret_access_key", True), ("AWS_ACCESS_KEY_ID", True), ("SENTRY_DSN", True),
     ("Authorization", True), ("Cookie", True), ("X-Export-Signature", True),
     ("routing_key", True), ("slack_bot_token", True), ("EXPORT_WEBHOOK_URL", True),
     ("x-amz-security-token", True), ("webhook_secret", True), ("key", True),
     ("dedup_key", False), ("request_id", False), ("partition", False), ("step", False),
     ("message", False), ("monkey", False), ("url", False), (3, False)],
)  # fmt: skip
def test_secret_keys(key, secret):
    assert is_secret_key(key) is secret


def test_scrub_walks_everything_sentry_sends():
    event = {
        "message": "retrying https://s3.example/v.mp4?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE",
        "extra": {"settings": {"webhook_secret": "whsec_live_abcdef", "db_url": "postgresql://u:pgpass-42@h/d",
                               "tokens_used": 3}},
        "request": {"headers": [["Authorization", "Basic dXNlcjpodW50ZXIy"], ["Host", "h"]],
                    "cookies": "session=abc", "url": "https://app.example/hook?key=sentrykey123"},
        "breadcrumbs": {"values": [{"message": "password=hunter2", "data": {"url": "https://x/y?sig=deadbeefcafe"}}]},
        "exception": {"values": [{"type": "FFmpegError", "value": "ffmpeg: https://cdn.example/a?token=s3cr3t-cdn-token"}]},
        "nested": [[[{"apikey": "xoxb-123456789012-x"}]]],
        "tags": {"request_id": "42", "dedup_key": "export-pipeline/runs/x/1"},
        "bytes": b"password=hunter2",
        "number": 1.5,
        "none": None,
    }  # fmt: skip
    out = before_send(event, {})
    text = json.dumps(out)
    for secret in SECRETS:
        assert secret not in text, secret
    assert "dXNlcjpodW50ZXIy" not in text and "session=abc" not in text
    assert out["request"]["headers"][1] == ["Host", "h"]
    assert out["tags"] == event["tags"] and out["number"] == 1.5 and out["none"] is None
    assert out["extra"]["settings"]["tokens_used"] == 3
    assert (
        event["extra"]["settings"]["webhook_secret"] == "whsec_live_abcdef"
    )  # a copy, not in place


def test_scrub_survives_deep_nesting():
    value: dict = {}
    inner = value
    for _ in range(200):
        inner["a"] = {}
        inner = inner["a"]
    assert FILTERED in json.dumps(scrub(value))


def test_error_tracking_is_off_without_a_dsn():
    assert init_error_tracking(None) is False and init_error_tracking("") is False
    assert report_step_exception(RuntimeError("x"), request_id=1, user_id="u", partition="exp-1",
                                 step="s", attempt=1) is None  # fmt: skip


def test_the_failure_context_is_found_through_the_exception_chain():
    from export_pipeline.media.runner import FFmpegError

    cause = FFmpegError(["ffmpeg", "-i", "https://s3/x.mp4?X-Amz-Signature=a"], 1, "line\n" * 2000)
    try:
        try:
            raise cause
        except FFmpegError as exc:
            raise RuntimeError("encoded_video: the encode failed") from exc
    except RuntimeError as wrapped:
        name, context = failure_context(wrapped)
    assert name == "ffmpeg"  # the cause names the context
    assert context["returncode"] == 1 and context["program"] == "ffmpeg"
    assert len(context["stderr_tail"]) <= 3000 and "X-Amz-Signature" not in str(context)
    assert failure_context(ValueError("no ffmpeg here")) is None


# ---- a Sentry endpoint on loopback


class SentryServer:
    """Accepts Sentry envelopes (`POST /api/<project>/envelope/`, gzip or plain), parses them
    and keeps the events."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.bodies: list[bytes] = []
        self.auth: list[str] = []
        self.changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                assert self.headers.get("Content-Encoding") in (None, "gzip", "identity")
                with server.changed:
                    server.bodies.append(raw)
                    server.auth.append(self.headers.get("X-Sentry-Auth", ""))
                    if self.path == "/api/1/envelope/":
                        server.events += [
                            p for h, p in parse_envelope(raw) if h.get("type") == "event"
                        ]
                    server.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://sentrykey123@127.0.0.1:{self.http.server_address[1]}/1"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def wait_events(self, count: int, timeout_s: float = 30) -> list[dict]:
        sentry_sdk.flush(timeout=timeout_s)
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout=timeout_s), (
                self.events
            )
            return list(self.events)


def parse_envelope(raw: bytes) -> list[tuple[dict, dict]]:
    """Sentry's envelope format: a header line, then items of a header line and a payload
    (of `length` bytes when given, else up to the next newline)."""
    lines = raw.split(b"\n", 1)
    json.loads(lines[0])  # the envelope header
    rest = lines[1] if len(lines) > 1 else b""
    items = []
    while rest.strip():
        header_line, rest = rest.split(b"\n", 1)
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        items.append((header, json.loads(payload) if payload else {}))
    return items


def assert_no_secrets(server: SentryServer) -> None:
    """Nothing secret in the events, nor anywhere in what was sent (but the DSN's public key,
    which the SDK puts in every envelope's header by design: it is not a secret)."""
    events = json.dumps(server.events)
    body = b"".join(server.bodies).decode()
    for secret in SECRETS:
        assert secret not in events, secret
        if secret != "sentrykey123":
            assert secret not in body, secret


@pytest.fixture
def sentry() -> Iterator[SentryServer]:
    server = SentryServer()
    server.thread.start()
    assert init_error_tracking(server.dsn, environment="test", release="export-pipeline@test")
    try:
        yield server
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        server.http.shutdown()
        server.http.server_close()


def test_report_step_exception_tags_and_scrubs(sentry):
    try:
        raise RuntimeError(
            "upload to https://s3.example/v.mp4?X-Amz-Signature=deadbeefcafe failed, password=hunter2"
        )
    except RuntimeError as exc:
        event_id = report_step_exception(exc, request_id=7, user_id="u-7", partition="exp-7",
                                         step="published_video", attempt=2, step_key="published_video",
                                         run_id="r-1", job="export_video_job")  # fmt: skip
    assert event_id
    (event,) = sentry.wait_events(1)
    assert event["event_id"] == event_id and event["environment"] == "test"
    tags = event["tags"]
    assert tags["request_id"] == "7" and tags["user"] == "u-7" and tags["partition"] == "exp-7"
    assert (
        tags["step"] == "published_video"
        and tags["attempt"] == "2"
        and tags["permanent"] == "false"
    )
    assert event["user"] == {"id": "u-7"} and event["level"] == "error"
    assert_no_secrets(sentry)
    assert "sentrykey123" in sentry.auth[0]  # the DSN's public key: in the auth header


@pytest.mark.e2e
def test_a_failing_ffmpeg_reaches_sentry_with_its_stderr_and_without_secrets(
    settings, store, instance, cdn, sentry, tmp_path
):
    """A real export whose FFmpeg fails on every attempt (a stand-in binary that prints a
    signed URL and a password to stderr and exits 1): one event per attempt, tagged, with
    the stderr tail and nothing secret."""
    fake = tmp_path / "ffmpeg"
    real = shutil.which("ffmpeg")
    fake.write_text(
        "#!/bin/sh\n"
        "# FFmpeg itself, except for the encodes (H.264), which fail as a crash would\n"
        'case "$*" in *libx264*) ;; *) exec ' + real + ' "$@" ;; esac\n'
        "echo 'Opening https://s3.example/clips/a.mp4?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE' >&2\n"
        "echo 'password=hunter2 rejected' >&2\n"
        "echo 'Conversion failed!' >&2\n"
        "exit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = settings.replace(media={"ffmpeg": str(fake)})
    url = cdn.url("landscape.mp4") + "?token=s3cr3t-cdn-token"
    request_id, result, _ = export(settings, store, instance, [clip(url, 1)], user_id="u-99")
    assert not result.success and store.get(request_id)["status"] == st.FAILED

    events = sentry.wait_events(2)  # settings: one retry, so two attempts
    attempts = sorted(e["tags"]["attempt"] for e in events)
    assert attempts == ["1", "2"]
    for event in events:
        tags = event["tags"]
        assert tags["request_id"] == str(request_id) and tags["user"] == "u-99"
        assert tags["partition"] == f"exp-{request_id}" and tags["step"] == "encoded_video"
        assert tags["permanent"] == "false" and event["level"] == "error"
        assert tags["run_id"] == result.run_id and tags["step_key"].startswith("encoded_video")
        ffmpeg = event["contexts"]["ffmpeg"]
        assert "Conversion failed!" in ffmpeg["stderr_tail"] and ffmpeg["returncode"] == 1
        assert "https://s3.example/clips/a.mp4?" in ffmpeg["stderr_tail"]
    assert_no_secrets(sentry)
