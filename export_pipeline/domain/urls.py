"""Clip and file URLs as a request gives them: their syntax, checked without any lookup."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import httpx

MAX_URL_CHARS = 2048
MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63
# Characters of a host name in its ASCII (IDNA) form; anything else is not resolvable.
HOST_NAME = re.compile(r"[a-z0-9_.-]+")


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _shorten(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _port_problem(netloc: str) -> str | None:
    # urlsplit only says "Port out of range 0-65535"; name the port the URL gave.
    after_host = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    port = after_host.partition(":")[2]
    if not port:
        return None
    if not (port.isascii() and port.isdigit()):
        return f"port {_shorten(port)!r} is not a number"
    if int(port) > 65535:
        return f"port {_shorten(port)} is out of range 0-65535"
    if int(port) == 0:
        return "port 0 cannot be connected to"
    return None


def _host_problem(host: str) -> str | None:
    """`host` is the ASCII (IDNA) form: what DNS would be asked."""
    if ip_literal(host) or ":" in host:
        return None  # an IP literal; httpx has validated its syntax
    name = host.removesuffix(".")
    if len(name) > MAX_HOST_CHARS:
        return f"the host is {len(name)} characters long; the limit is {MAX_HOST_CHARS}"
    if not HOST_NAME.fullmatch(name):
        return f"the host {_shorten(name, 60)!r} contains characters a host name cannot have"
    for label in name.split("."):
        if not label:
            return f"the host {_shorten(name, 60)!r} has an empty label (two dots in a row)"
        if len(label) > MAX_LABEL_CHARS:
            return (
                f"a label of the host is {len(label)} characters long; "
                f"the limit is {MAX_LABEL_CHARS}"
            )
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with the syntax of `url` as a clip URL, in words; None if nothing.

    Pure (no DNS lookup, no connection), so request intake can refuse a bad URL at once;
    check_url calls it on every hop so nothing an HTTP client would choke on is retried.
    """
    if len(url) > MAX_URL_CHARS:
        return f"the URL is {len(url)} characters long; the limit is {MAX_URL_CHARS}"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "the URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        return f"the URL cannot be parsed ({exc})"
    if not parts.scheme:
        return "the URL has no scheme (http:// or https://)"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not allowed, only http and https"
    if "@" in parts.netloc:
        return "the URL has a user name or password before the host"
    if not parts.netloc or not parts.hostname:
        return "the URL has no host"
    port_problem = _port_problem(parts.netloc)
    if port_problem:
        return port_problem
    try:
        host = httpx.URL(url).raw_host.decode("ascii")
    except httpx.InvalidURL as exc:  # e.g. "Invalid IDNA hostname: '☃.com'"
        return str(exc)
    return _host_problem(host)
