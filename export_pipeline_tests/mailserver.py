"""SMTP servers on 127.0.0.1 for the email tests: a real one (aiosmtpd) that records what it
accepts and answers as scripted (plain, STARTTLS or implicit TLS, with or without a
login), one that accepts connections and never says a word, and a port nobody listens on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from export_pipeline_tests.io.http.test_download_rebinding import ThrowawayCA

# aiosmtpd's own protocol log (AUTH lines included) is the test server's, not ours.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


class MailServer:
    """aiosmtpd on 127.0.0.1. `security`: `none`, `starttls` (offered, and required before
    MAIL) or `tls` (implicit). `login`: (user, password) required before MAIL.
    `rcpt_answers` / `data_answers`: replies given instead of accepting, in order, one per
    RCPT / DATA (then it accepts); `refuse`: {address: reply} for every RCPT to it.
    `port`: where to listen (default: a free one)."""

    def __init__(
        self,
        *,
        security: str = "none",
        ca: ThrowawayCA | None = None,
        login: tuple[str, str] | None = None,
        rcpt_answers: list[str] | None = None,
        data_answers: list[str] | None = None,
        refuse: dict[str, str] | None = None,
        port: int | None = None,
    ):
        self.received: list[Received] = []
        self.rcpt_answers = list(rcpt_answers or [])
        self.data_answers = list(data_answers or [])
        self.refuse = dict(refuse or {})
        self.logins: list[str] = []
        self.port = port or free_port()
        tls = None
        if security != "none":
            assert ca is not None, "TLS needs the throwaway CA"
            tls = ca.server_context(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), [])
        options: dict = {}
        if security == "starttls":
            options.update(tls_context=tls, require_starttls=True)
        if login is not None:
            # Implicit TLS is TLS from the start: aiosmtpd only counts STARTTLS.
            options.update(
                authenticator=self._authenticator(login),
                auth_required=security == "starttls",
                auth_require_tls=security == "starttls",
            )
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port,
            ssl_context=tls if security == "tls" else None, **options,
        )  # fmt: skip

    def _authenticator(self, login: tuple[str, str]):
        def check(server, session, envelope, mechanism, auth_data):
            user = auth_data.login.decode()
            if (user, auth_data.password.decode()) != login:
                return AuthResult(success=False, handled=False)  # 535
            self.logins.append(user)
            return AuthResult(success=True, auth_data=auth_data)

        return check

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class _Handler:
    def __init__(self, server: MailServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        refused = self.server.refuse.get(address)
        if refused:
            return refused
        if self.server.rcpt_answers:
            return self.server.rcpt_answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.server.data_answers:
            return self.server.data_answers.pop(0)
        message = BytesParser(policy=default).parsebytes(envelope.content)
        login = session.auth_data.login.decode() if session.authenticated else None
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.server.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, login, tls)
        )
        return "250 Message accepted for delivery"


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (no greeting): a hung server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        self.sock.close()
        for conn in self.held:
            conn.close()


def ca_file(ca: ThrowawayCA, directory: Path) -> str:
    """The CA's certificate as a PEM file (what `EXPORT_SMTP_CA_FILE` points at)."""
    path = directory / "smtp-ca.pem"
    path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    return str(path)
