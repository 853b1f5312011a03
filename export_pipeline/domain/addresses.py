"""Email addresses as a request gives them (`notify_email`): one plain mailbox, checked the
way mail servers will read it, so an address that can never work is refused at intake
rather than bounced after the export.

Accepted: `local@domain`, where the local part is a dot-atom of at most 64 characters
(letters, digits and ``!#$%&'*+/=?^_`{|}~-``, dots between them) and the domain is a host
name of two labels or more (letters, digits and hyphens, at most 63 characters each, a
top-level label that is not all digits), in ASCII or as an internationalised name (kept
in its ASCII form, `xn--...`); at most 254 characters in all. Not accepted, on purpose:
display names (`Ann <ann@example.com>`), several addresses, quoted local parts, IP
literals, anything with spaces or control characters (a header could be injected).
"""

from __future__ import annotations

import re
from typing import Any

from export_pipeline.domain.values import shown

MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a forward path, less its angle brackets
MAX_LOCAL_CHARS = 64
MAX_LABEL_CHARS = 63

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


def parse_address(value: Any) -> str:
    """The address in `value`, surrounding spaces removed and the domain in lower-case
    ASCII; ValueError saying what is wrong with it otherwise."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    text = value.strip()
    if not text:
        raise ValueError("it is empty")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("it contains spaces or control characters")
    if "@" not in text:
        raise ValueError("no @")
    local, _, domain = text.rpartition("@")
    if not local:
        raise ValueError("nothing before the @")
    if "@" in local:
        raise ValueError("more than one @")
    if len(local) > MAX_LOCAL_CHARS:
        raise ValueError(f"the part before the @ is longer than {MAX_LOCAL_CHARS} characters")
    if not _LOCAL.fullmatch(local):
        raise ValueError("the part before the @ has characters or dots an address cannot have")
    ascii_domain = _ascii_domain(domain)
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS_CHARS:
        raise ValueError(f"it is longer than {MAX_ADDRESS_CHARS} characters")
    return address


def _ascii_domain(domain: str) -> str:
    if not domain:
        raise ValueError("no domain after the @")
    if domain.startswith("[") or domain.replace(".", "").isdigit():
        raise ValueError("the domain is an IP address, not a name")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("the domain is not a valid internationalised name") from None
    labels = domain.lower().split(".")
    if len(labels) < 2:
        raise ValueError("the domain has no dot (e.g. example.com)")
    for label in labels:
        if len(label) > MAX_LABEL_CHARS or not _LABEL.fullmatch(label):
            raise ValueError(f"the domain's part {shown(label, 40)} is not a valid host name")
    if labels[-1].isdigit():
        raise ValueError("the domain's last part is a number")
    return ".".join(labels)


def address_problem(value: Any) -> str | None:
    """Why `value` is not one email address (None: it is)."""
    try:
        parse_address(value)
    except ValueError as exc:
        return str(exc)
    return None
