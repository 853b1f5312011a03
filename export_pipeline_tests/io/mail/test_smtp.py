"""The SMTP sender (issue 23) against real SMTP servers on 127.0.0.1 (aiosmtpd): delivered
with both parts and its headers, over STARTTLS and implicit TLS verified against a
throwaway CA, with a login; refusals told apart (5xx: for good, 4xx: later); a server that
is down or never answers is a transient failure that does not hang; no password in what
it says."""

import time
from datetime import UTC, datetime

import pytest

from export_pipeline.io.mail import (
    DELIVERY_HEADER,
    REQUEST_HEADER,
    SmtpConfig,
    SmtpSender,
    Templates,
    compose,
    email_values,
    mailbox,
)
from export_pipeline.io.mail.content import SAMPLE_NOW, SAMPLE_ROW
from export_pipeline_tests.io.http.test_download_rebinding import ThrowawayCA
from export_pipeline_tests.mailserver import MailServer, SilentServer, ca_file, free_port

PASSWORD = "s3cr3t-SMTP-pa55"
USER = "exports@example.com"
TO = "creator@example.com"


def message(delivery: str = "exp-42:complete:2026-11-16T10:32:05.000001Z", to: str = TO):
    rendered = Templates().render("completion", email_values("completion", SAMPLE_ROW, SAMPLE_NOW))
    return compose(
        rendered,
        sender=mailbox("Video Exports <exports@example.com>"),
        to=to,
        reply_to="support@example.com",
        delivery=delivery,
        request_id=42,
        date=datetime(2026, 11, 16, 10, 33, tzinfo=UTC),
    )


@pytest.fixture
def ca(tmp_path) -> ThrowawayCA:
    return ThrowawayCA(tmp_path)


def plain(server, **options) -> SmtpConfig:
    return SmtpConfig("127.0.0.1", server.port, security="none", timeout_s=5, **options)


def test_a_message_is_delivered_with_both_parts_and_its_headers():
    with MailServer() as server, SmtpSender(plain(server)) as sender:
        result = sender.send(message())
    assert result.ok and result.detail == "accepted"
    (received,) = server.received
    assert received.rcpt_tos == [TO] and received.mail_from == "exports@example.com"
    got = received.message
    assert got["From"] == "Video Exports <exports@example.com>"
    assert (got["To"], got["Reply-To"]) == (TO, "support@example.com")
    assert got["Subject"] == "Your video is ready"
    assert got["Message-ID"] == "<exp-42.complete.2026-11-16T10.32.05.000001Z@example.com>"
    assert got[DELIVERY_HEADER] == "exp-42:complete:2026-11-16T10:32:05.000001Z"
    assert got[REQUEST_HEADER] == "exp-42" and got["Auto-Submitted"] == "auto-generated"
    assert got["Date"].datetime == datetime(2026, 11, 16, 10, 33, tzinfo=UTC)
    text = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    assert SAMPLE_ROW["video_url"] in text and "Kept until:  Monday 23 November 2026" in text
    assert 'href="https://storage.example/videos/exp-42.mp4?X-Amz-Signature=sample"' in html
    assert got.get_content_type() == "multipart/alternative"


def test_starttls_and_a_login_on_one_connection_for_many_messages(ca, tmp_path):
    with MailServer(security="starttls", ca=ca, login=(USER, PASSWORD)) as server:
        config = SmtpConfig(
            "127.0.0.1", server.port, "starttls", USER, PASSWORD, 5, ca_file(ca, tmp_path)
        )
        with SmtpSender(config) as sender:
            assert sender.send(message()).ok
            assert sender.send(message(to="second@example.com")).ok
    assert [r.rcpt_tos for r in server.received] == [[TO], ["second@example.com"]]
    assert all(r.tls and r.login == USER for r in server.received)
    assert server.logins == [USER]  # one connection, one login


def test_implicit_tls_with_a_login(ca, tmp_path):
    with MailServer(security="tls", ca=ca, login=(USER, PASSWORD)) as server:
        config = SmtpConfig("127.0.0.1", server.port, "tls", USER, PASSWORD, 5,
                            ca_file(ca, tmp_path))  # fmt: skip
        with SmtpSender(config) as sender:
            assert sender.send(message()).ok
    (received,) = server.received
    assert received.login == USER and received.message["Subject"] == "Your video is ready"


def test_a_server_certificate_that_is_not_trusted_is_refused(ca):
    """Without the CA file the throwaway CA is unknown: verification is on."""
    with MailServer(security="starttls", ca=ca) as server:
        config = SmtpConfig("127.0.0.1", server.port, "starttls", timeout_s=5)
        with SmtpSender(config) as sender:
            result = sender.send(message())
    assert result.transient and result.unusable
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail and server.received == []


def test_a_server_without_starttls_is_not_used_in_clear():
    with MailServer() as server, SmtpSender(plain(server)) as _:
        config = SmtpConfig("127.0.0.1", server.port, "starttls", timeout_s=5)
        result = SmtpSender(config).send(message())
    assert result.unusable and "STARTTLS" in result.detail and server.received == []


def test_a_refused_login_is_the_servers_problem_and_never_shows_the_password(ca, tmp_path):
    with MailServer(security="starttls", ca=ca, login=(USER, "the-right-one")) as server:
        config = SmtpConfig(
            "127.0.0.1", server.port, "starttls", USER, PASSWORD, 5, ca_file(ca, tmp_path)
        )
        result = SmtpSender(config).send(message())
    assert result.unusable and not result.permanent
    assert "the login was refused: 535" in result.detail
    assert PASSWORD not in result.detail and PASSWORD not in repr(config)


@pytest.mark.parametrize(
    ("options", "permanent", "said"),
    [
        ({"rcpt_answers": ["550 5.1.1 no such mailbox"]}, True, "the recipient was refused: 550"),
        ({"rcpt_answers": ["451 4.3.0 try again later"]}, False, "the recipient was refused: 451"),
        ({"data_answers": ["554 5.7.1 message refused"]}, True, "the message was refused: 554"),
        ({"data_answers": ["452 4.3.1 out of storage"]}, False, "the message was refused: 452"),
    ],
)
def test_refusals_of_a_message_for_good_or_for_now(options, permanent, said):
    """A 5xx refuses this message for good, a 4xx for now; either way the connection goes
    on with the next message."""
    with MailServer(**options) as server, SmtpSender(plain(server)) as sender:
        refused = sender.send(message())
        again = sender.send(message())
    assert not refused.ok and refused.permanent is permanent and not refused.unusable
    assert said in refused.detail and refused.transient is not permanent
    assert again.ok and len(server.received) == 1


def test_what_a_refusal_says_never_holds_the_password_or_a_signature(ca, tmp_path):
    reply = f"554 5.7.1 see https://help.example/policy?token=abc123 ({PASSWORD})"
    with MailServer(
        security="starttls", ca=ca, login=(USER, PASSWORD), data_answers=[reply]
    ) as server:
        config = SmtpConfig(
            "127.0.0.1", server.port, "starttls", USER, PASSWORD, 5, ca_file(ca, tmp_path)
        )
        result = SmtpSender(config).send(message())
    assert result.permanent
    assert result.detail == (
        "the message was refused: 554 5.7.1 see https://help.example/policy?[Filtered] ([Filtered])"
    )


def test_a_server_that_is_down_is_tried_later():
    started = time.monotonic()
    result = SmtpSender(SmtpConfig("127.0.0.1", free_port(), "none", timeout_s=5)).send(message())
    assert result.transient and result.unusable and "ConnectionRefusedError" in result.detail
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_a_server_that_never_answers_times_out(security):
    with SilentServer() as server:
        started = time.monotonic()
        config = SmtpConfig("127.0.0.1", server.port, security, timeout_s=0.5)
        result = SmtpSender(config).send(message())
        took = time.monotonic() - started
    assert result.transient and result.unusable and "timed out" in result.detail
    assert took < 3 and server.accepted == 1


def test_the_configuration_is_checked():
    with pytest.raises(ValueError, match="never sent in clear"):
        SmtpConfig("smtp.example.com", security="none", username="u", password="p")
    with pytest.raises(ValueError, match="needs a user name"):
        SmtpConfig("smtp.example.com", password="p")
    with pytest.raises(ValueError, match="starttls, tls, none"):
        SmtpConfig("smtp.example.com", security="ssl")
    with pytest.raises(ValueError, match="port"):
        SmtpConfig("smtp.example.com", port=70000)
    with pytest.raises(ValueError, match="CA file '/nonexistent/ca.pem' does not exist"):
        SmtpConfig("smtp.example.com", ca_file="/nonexistent/ca.pem")
    ports = {s: SmtpConfig("smtp.example.com", security=s).server_port for s in ("starttls", "tls", "none")}  # fmt: skip
    assert ports == {"starttls": 587, "tls": 465, "none": 25}
    assert "p4ss" not in repr(SmtpConfig("smtp.example.com", username="u", password="p4ss"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("exports@example.com", "exports@example.com"),
        ("Video Exports <exports@Example.com>", "Video Exports <exports@example.com>"),
        ('"Exports, Inc." <exports@example.com>', '"Exports, Inc." <exports@example.com>'),
    ],
)
def test_mailbox(value, expected):
    assert mailbox(value) == expected


@pytest.mark.parametrize(
    "value", ["a@example.com, b@example.com", "nobody", "x@example.com\r\nBcc: y@example.com"]
)
def test_mailbox_refuses_what_is_not_one_address(value):
    with pytest.raises(ValueError, match="From"):
        mailbox(value, "From")
