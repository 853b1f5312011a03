"""One email as it leaves: headers and the plain-text and HTML parts (`email.message`)."""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

from export_pipeline.domain.addresses import parse_address
from export_pipeline.io.mail.templates import Rendered

DELIVERY_HEADER = "X-Export-Delivery"
REQUEST_HEADER = "X-Export-Request"


def mailbox(value: str, what: str = "address") -> str:
    """`value` (`exports@example.com` or `Video Exports <exports@example.com>`) checked
    and formatted for a header; ValueError naming `what` otherwise."""
    if not isinstance(value, str) or any(ch in value for ch in "\r\n"):
        raise ValueError(f"the {what} must be one address, got {value!r}")
    found = getaddresses([value])
    if len(found) != 1:
        raise ValueError(f"the {what} must be one address, got {value!r}")
    name, address = found[0]
    try:
        address = parse_address(address)
    except ValueError as exc:
        raise ValueError(f"the {what} {value!r} is not an email address ({exc})") from None
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def compose(
    rendered: Rendered,
    *,
    sender: str,
    to: str,
    reply_to: str | None,
    delivery: str,
    request_id: int,
    date: datetime,
) -> EmailMessage:
    """The message: `rendered` as text and HTML alternatives, from `sender` to `to`.
    `delivery` names what it tells (`exp-42:complete:<completed_at>`): it is sent as
    `X-Export-Delivery` and makes the Message-ID, the same on every attempt, so a copy
    sent twice (an answer lost after the server took it) reads as one message."""
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = to
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(date, usegmt=True)
    message["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9.-]', '.', delivery)}@{domain_of(sender)}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    message[REQUEST_HEADER] = f"exp-{request_id}"
    message[DELIVERY_HEADER] = delivery
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
