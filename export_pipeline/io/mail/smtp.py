"""Sending email over SMTP with the standard library, and telling why a send failed.

`SmtpSender` opens one connection on its first message (implicit TLS, STARTTLS or none,
then a login when a user name is set) and sends every message of a tick through it. Each
send returns a `SendResult` instead of raising, classified for the caller:

- `ok`: the server took the message.
- `permanent`: the server refused this message for good (a 5xx reply to its recipient or
  its content, such as `550 no such mailbox`): sending it again cannot help.
- transient (neither): a 4xx reply (`451 try again later`, greylisting), or the server
  could not be used at all, `unusable`: refused or reset connections, timeouts, a TLS
  handshake or certificate that fails, STARTTLS not offered, a login or From address
  refused. Those are the server's or the configuration's, not the message's: the caller
  stops for this tick and tries again later.

Nothing sent here is logged (smtplib's debug output stays off), and a result's `detail`
never holds the password or a URL's query string (a presigned link's signature): both are
cut from it (the sensors scrub their log lines again, `observability.scrub`).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect. `security`: `starttls` (upgrade a plain connection, port
    587), `tls` (implicit TLS, port 465) or `none` (port 25, only without a login: a
    password is never sent in clear). `ca_file`: a CA bundle to verify the server with
    (an internal relay); the system's by default. Certificates are always verified."""

    host: str
    port: int | None = None
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("SMTP needs a host")
        if self.security not in SECURITY:
            raise ValueError(f"SMTP security must be one of {', '.join(SECURITY)}, "
                             f"got {self.security!r}")  # fmt: skip
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"SMTP port must be from 1 to 65535, got {self.port}")
        if self.password and not self.username:
            raise ValueError("an SMTP password needs a user name")
        if self.username and self.security == "none":
            raise ValueError(
                "an SMTP login needs security starttls or tls: a password is never sent in clear"
            )
        if self.timeout_s <= 0:
            raise ValueError(f"the SMTP timeout must be > 0 s, got {self.timeout_s}")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ValueError(f"the SMTP CA file {self.ca_file!r} does not exist")

    @property
    def server_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True)
class SendResult:
    """How one message went; see the module docstring for what each flag means."""

    ok: bool
    detail: str
    permanent: bool = False
    unusable: bool = False

    @property
    def transient(self) -> bool:
        return not self.ok and not self.permanent


# Refusals that concern every message, not one: the configuration or the server's state.
_SERVER_REFUSALS = {
    smtplib.SMTPSenderRefused: "the From address was refused",
    smtplib.SMTPAuthenticationError: "the login was refused",
    smtplib.SMTPConnectError: "the server refused the connection",
    smtplib.SMTPHeloError: "the server refused the greeting",
}


_URL_QUERY = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"<>]*)[?#][^\s'\"<>]*")
HIDDEN = "[Filtered]"


def permanent_reply(code: int) -> bool:
    """A 5xx reply refuses for good; 4xx (and anything else) may pass later."""
    return 500 <= code < 600


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(words.split())}".strip()


class SmtpSender:
    """One SMTP connection for many messages: opened by the first `send`, closed by
    `close` (or leaving a `with` block); opened again after it broke."""

    def __init__(self, config: SmtpConfig):
        self.config = config
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        if config.security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.server_port, timeout=config.timeout_s,
                context=config.tls_context(),
            )  # fmt: skip
        else:
            conn = smtplib.SMTP(config.host, config.server_port, timeout=config.timeout_s)
        try:
            conn.ehlo()
            if config.security == "starttls":
                conn.starttls(context=config.tls_context())  # refused if not offered
                conn.ehlo()
            if config.username:
                conn.login(config.username, config.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, message: EmailMessage) -> SendResult:
        """Send `message` to its `To`; never raises for what the server or network does."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:  # the connection stays usable (RSET)
            code, text = next(iter(exc.recipients.values()), (0, b""))
            return self._refused("the recipient was refused", code, text)
        except smtplib.SMTPDataError as exc:
            return self._refused("the message was refused", exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPResponseException as exc:  # From, login, connect, HELO, STARTTLS
            what = _SERVER_REFUSALS.get(type(exc), "the server refused")
            return self._unusable(f"{what}: {_reply(exc.smtp_code, exc.smtp_error)}")
        except TimeoutError as exc:
            return self._unusable(f"no answer within {self.config.timeout_s:g} s ({exc})")
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, TLS, not supported
            return self._unusable(f"{type(exc).__name__}: {exc}")
        return SendResult(ok=True, detail="accepted")

    def _refused(self, what: str, code: int, text: bytes | str) -> SendResult:
        return SendResult(
            ok=False, detail=self._clean(f"{what}: {_reply(code, text)}"),
            permanent=permanent_reply(code),
        )  # fmt: skip

    def _unusable(self, detail: str) -> SendResult:
        # Whatever state it is in, drop it (no QUIT: a server that does not answer would
        # hold us for another timeout); the next message starts afresh.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        where = f"{self.config.host}:{self.config.server_port}"
        return SendResult(ok=False, detail=self._clean(f"{where}: {detail}"), unusable=True)

    def _clean(self, detail: str) -> str:
        """`detail` without the password and without any URL's query (a signature)."""
        password = self.config.password
        if password:
            detail = detail.replace(password, HIDDEN)
        return _URL_QUERY.sub(rf"\1?{HIDDEN}", detail)[:500]
