"""Fetching one clip from its CDN URL: checked, streamed to disk, hashed on the way.

Clip URLs come from a database row an attacker may influence, so every URL (and every
redirect) is checked against the policy before a connection is made: scheme, optional
host allow-list, and no loopback/private/link-local/metadata addresses unless allowed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

# Answers that mean the clip is gone for good: retrying will not bring it back.
GONE = {401, 403, 404, 410}
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


class DownloadError(Exception):
    """A clip could not be fetched. `permanent` errors are not worth retrying."""

    def __init__(self, message: str, *, permanent: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class DownloadPolicy:
    max_bytes: int = 2 * 1024**3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    allow_http: bool = False
    allow_private_hosts: bool = False
    allowed_hosts: tuple[str, ...] = ()
    # Private/reserved networks allowed anyway (e.g. "127.0.0.1/32" for a test CDN).
    private_networks: tuple[str, ...] = ()

    def address_allowed(self, address: str) -> bool:
        if self.allow_private_hosts or _is_public(address):
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.private_networks)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size_bytes: int


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, policy: DownloadPolicy) -> None:
    """Raise a permanent DownloadError if the policy forbids fetching `url`."""
    parts = urlsplit(url)
    allowed_schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in allowed_schemes:
        raise DownloadError(
            f"URL scheme {parts.scheme!r} is not allowed (only {' or '.join(allowed_schemes)})",
            permanent=True,
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise DownloadError("URL has no host", permanent=True)
    if policy.allowed_hosts and host not in policy.allowed_hosts:
        raise DownloadError(f"host {host!r} is not in the allowed CDN hosts", permanent=True)
    if policy.allow_private_hosts:
        return  # skip the DNS lookup too
    try:
        infos = socket.getaddrinfo(host, parts.port or None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DownloadError(
            f"host {host!r} could not be resolved ({exc})", permanent=False
        ) from exc
    for info in infos:
        address = info[4][0]
        if not policy.address_allowed(address):
            raise DownloadError(
                f"host {host!r} resolves to a private or reserved address ({address})",
                permanent=True,
            )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.replace(".", "", 1).isdigit() else None


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if code in GONE:
        raise DownloadError(
            f"its source URL has expired or was removed (HTTP {code}); "
            "regenerate the clip and export again",
            permanent=True,
        )
    if code == 429 or code >= 500:
        raise DownloadError(
            f"the CDN answered HTTP {code}; will retry",
            permanent=False,
            retry_after_s=_retry_after(response),
        )
    if code >= 400:
        raise DownloadError(f"the CDN refused the download (HTTP {code})", permanent=True)


def download(url: str, dest: Path, policy: DownloadPolicy, client: httpx.Client) -> Downloaded:
    """Stream `url` into `dest`, following (and re-checking) redirects by hand."""
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url, policy)
        try:
            with client.stream("GET", url) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadError("redirect without a Location", permanent=True)
                    url = urljoin(url, location)
                    continue
                _check_status(response)
                return _save(response, dest, policy.max_bytes)
        except httpx.TimeoutException as exc:
            raise DownloadError(f"timed out ({type(exc).__name__})", permanent=False) from exc
        except httpx.TransportError as exc:
            raise DownloadError(f"connection failed ({exc})", permanent=False) from exc
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", permanent=True)


def _save(response: httpx.Response, dest: Path, max_bytes: int) -> Downloaded:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(
            f"the file is {int(declared)} bytes; the limit per clip is {max_bytes}", permanent=True
        )
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        for chunk in response.iter_bytes(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(
                    f"the file exceeds the limit per clip of {max_bytes} bytes", permanent=True
                )
            digest.update(chunk)
            out.write(chunk)
    if declared and declared.isdigit() and size != int(declared):
        raise DownloadError(
            f"the download was cut short ({size} of {declared} bytes)", permanent=False
        )
    return Downloaded(path=dest, sha256=digest.hexdigest(), size_bytes=size)


def http_client(policy: DownloadPolicy) -> httpx.Client:
    timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
    return httpx.Client(timeout=timeout, follow_redirects=False)
