"""Fetching one clip from its CDN URL: checked, streamed to disk, hashed on the way.

Clip URLs come from a database row an attacker may influence, so every URL (and every
redirect) is checked against the policy before a connection is made: syntax, scheme,
optional host allow-list, and no loopback/private/link-local/metadata addresses unless
allowed. The host is resolved once per hop and the connection goes to an address that was
checked (DNS rebinding cannot swap in another one), with the Host header, TLS SNI and
certificate verification still for the name in the URL.

One download is bounded in time (an overall deadline, a minimum average throughput) and in
size (per clip, and per export through a `ByteBudget` shared by the export's downloads).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.domain.urls import ip_literal, url_problem

# Answers that mean the clip is gone for good: retrying will not bring it back.
GONE = {401, 403, 404, 410}
MAX_REDIRECTS = 5
MB = 1024**2


@dataclass(frozen=True)
class DownloadPolicy:
    max_bytes: int = 2 * 1024**3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    # Everything one clip download may take, redirects and stalls included.
    deadline_s: float = 600.0
    # Slower than this on average (once the grace period has passed) is a stuck CDN; 0: off.
    min_kbps: float = 32.0
    min_kbps_grace_s: float = 10.0
    allow_http: bool = False
    allow_private_hosts: bool = False
    allowed_hosts: tuple[str, ...] = ()
    # Private/reserved networks allowed anyway (e.g. "127.0.0.1/32" for a test CDN).
    private_networks: tuple[str, ...] = ()
    # How an operator allows what a refusal refused, by the option that would allow it
    # (the settings that set it): appended to the refusal's message.
    hints: dict[str, str] = field(default_factory=dict, compare=False)

    def hint(self, option: str) -> str:
        return f"; {self.hints[option]}" if option in self.hints else ""

    def address_allowed(self, address: str) -> bool:
        if self.allow_private_hosts or _is_public(address):
            return True
        ip = _unmapped(ipaddress.ip_address(address))
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.private_networks)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size_bytes: int


def _unmapped(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # ::ffff:a.b.c.d reaches the IPv4 address a.b.c.d: judge it as that address.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _is_public(address: str) -> bool:
    ip = _unmapped(ipaddress.ip_address(address))
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _addresses(host: str, port: int) -> list[str]:
    """The host's addresses: itself if it is an IP literal, else what the resolver says."""
    literal = ip_literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        return resolve(host, port)
    except socket.gaierror as exc:
        raise ExportFailure(
            f"host {host!r} could not be resolved ({exc})",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
        ) from exc
    except UnicodeError as exc:  # the idna codec; url_problem should have caught it
        raise ExportFailure(
            f"URL is not valid: host {host!r} ({exc})",
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        ) from exc


def check_url(url: str, policy: DownloadPolicy) -> list[str] | None:
    """Check `url` against the policy; return the addresses a connection may go to.

    The host is resolved here, once, and every address of the answer is checked: one
    forbidden address refuses the URL, since a later lookup could pick it. The caller
    connects only to the returned addresses. None means "connect by name": the policy allows
    every address (embedded demo, tests), so there is nothing to check or pin.
    Raises a permanent ExportFailure if the policy forbids the URL.
    """
    problem = url_problem(url)
    if problem:
        raise ExportFailure(
            f"URL is not valid: {problem}", cause=FailureCause.INVALID_REQUEST, permanent=True
        )
    parts = urlsplit(url)
    allowed_schemes = ("https", "http") if policy.allow_http else ("https",)
    scheme = parts.scheme.lower()
    if scheme not in allowed_schemes:
        raise ExportFailure(
            f"URL scheme {parts.scheme!r} is not allowed (only {' or '.join(allowed_schemes)})"
            + policy.hint("allow_http"),
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        )
    host = httpx.URL(url).raw_host.decode("ascii").lower()
    names = {host.removesuffix("."), (parts.hostname or "").removesuffix(".")}
    if policy.allowed_hosts and not names & set(policy.allowed_hosts):
        raise ExportFailure(
            f"host {host!r} is not in the allowed CDN hosts" + policy.hint("allowed_hosts"),
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        )
    if policy.allow_private_hosts:
        return None  # skip the DNS lookup too
    addresses = _addresses(host, parts.port or (443 if scheme == "https" else 80))
    if not addresses:
        raise ExportFailure(
            f"host {host!r} resolves to no address",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
        )
    for address in addresses:
        if ip_literal(address) is None or not policy.address_allowed(address):
            raise ExportFailure(
                f"host {host!r} resolves to a private or reserved address ({address})"
                + policy.hint("private_networks"),
                cause=FailureCause.INVALID_REQUEST,
                permanent=True,
            )
    return addresses


class ByteBudget:
    """The bytes all the clips of one export may add up to, shared by its download threads.

    Counted as bytes arrive (a declared Content-Length is reserved up front); once exceeded it
    stays exceeded, so the export's other downloads stop too. A limit of 0 means no limit.
    """

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._exceeded = False
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        """Count `count` more bytes; raise a permanent ExportFailure past the limit."""
        if self.limit_bytes <= 0:
            return
        with self._lock:
            self._exceeded = self._exceeded or self.used_bytes + count > self.limit_bytes
            if not self._exceeded:
                self.used_bytes += count
                return
        limit = _megabytes(self.limit_bytes)
        raise ExportFailure(
            f"the clips of this export add up to more than {limit} MB; "
            f"the limit per export is {limit} MB",
            cause=FailureCause.INVALID_REQUEST,
            permanent=True,
        )


def _megabytes(count: int) -> str:
    return str(count // MB) if count % MB == 0 else f"{count / MB:.2f}"


class _Clock:
    """The time limits of one download: an overall deadline and a minimum throughput."""

    def __init__(self, policy: DownloadPolicy):
        self.policy = policy
        self.started = time.monotonic()
        self.received = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.policy.deadline_s - self.elapsed()

    def deadline_error(self) -> ExportFailure:
        return ExportFailure(
            f"the download did not finish within {self.policy.deadline_s:g} s, the limit per "
            f"clip ({self.received} bytes received); will retry",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
        )

    def check(self, received: int) -> None:
        """Raise a transient ExportFailure if the download is past a time limit."""
        self.received = received
        if self.remaining() <= 0:
            raise self.deadline_error()
        elapsed = self.elapsed()
        minimum = self.policy.min_kbps
        if minimum > 0 and elapsed > self.policy.min_kbps_grace_s:
            rate = received / 1024 / elapsed
            if rate < minimum:
                raise ExportFailure(
                    f"the CDN sent {received} bytes in {elapsed:.0f} s ({rate:.1f} KB/s; "
                    f"the minimum is {minimum:g} KB/s); will retry",
                    cause=FailureCause.CLIP_DOWNLOAD,
                    permanent=False,
                )

    def timeout(self) -> httpx.Timeout:
        """The policy's timeouts, none longer than what is left of the deadline."""
        left = self.remaining()
        if left <= 0:
            raise self.deadline_error()
        p = self.policy
        return httpx.Timeout(min(p.read_timeout_s, left), connect=min(p.connect_timeout_s, left))


@contextmanager
def _watchdog(response: httpx.Response, clock: _Clock) -> Iterator[None]:
    """Cut the connection at the deadline, so a server that sends nothing cannot outlast it.

    A read blocked on the socket is woken only by shutting the socket down (closing it from
    another thread is not enough); the read then fails and the caller reports the deadline.
    """
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket):
        yield
        return

    def cut() -> None:
        with suppress(OSError):  # already closed: the download ended meanwhile
            # socket.socket's own shutdown: ssl.SSLSocket's would also drop its TLS state
            # under the reading thread's feet.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(max(clock.remaining(), 0.0), cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait (`Retry-After`: a number of seconds, or an HTTP
    date), never negative; None when it says nothing we can read."""
    value = response.headers.get("retry-after", "").strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # an HTTP date is GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if code in GONE:
        raise ExportFailure(
            f"its source URL has expired or was removed (HTTP {code}); "
            "regenerate the clip and export again",
            cause=FailureCause.EXPIRED_CLIP_URL,
            permanent=True,
        )
    if code == 429 or code >= 500:
        raise ExportFailure(
            f"the CDN answered HTTP {code}; will retry",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
            retry_after_s=retry_after(response),
        )
    if code >= 400:
        raise ExportFailure(
            f"the CDN refused the download (HTTP {code})",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=True,
        )


def _request(client: httpx.Client, url: str, address: str | None, clock: _Clock) -> httpx.Request:
    """GET `url`, sent to `address` (a checked IP) when given, else to the URL's host."""
    try:
        original = httpx.URL(url)
        if address is None or ip_literal(original.raw_host.decode("ascii")) is not None:
            return client.build_request("GET", original, timeout=clock.timeout())
        # Connect to the checked address; the server still sees the name: Host header, TLS
        # SNI, and httpcore verifies the certificate against `sni_hostname` (server_hostname).
        name = original.raw_host.decode("ascii")
        return client.build_request(
            "GET",
            original.copy_with(host=address),
            headers={"Host": original.netloc.decode("ascii")},
            extensions={"sni_hostname": name},
            timeout=clock.timeout(),
        )
    except (httpx.InvalidURL, ValueError) as exc:  # ValueError covers UnicodeError (idna)
        raise ExportFailure(
            f"URL is not valid: {exc}", cause=FailureCause.INVALID_REQUEST, permanent=True
        ) from exc


def _send(
    client: httpx.Client, url: str, addresses: list[str] | None, clock: _Clock
) -> httpx.Response:
    """Send GET `url` to the first of the checked `addresses` that takes the connection."""
    targets: list[str | None] = list(addresses) if addresses is not None else [None]
    for i, address in enumerate(targets):
        try:
            return client.send(_request(client, url, address, clock), stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Nothing was sent yet, so the next address is safe to try (as a by-name
            # connection would, e.g. IPv6 first, then IPv4).
            if i == len(targets) - 1:
                raise
    raise AssertionError("unreachable: targets is never empty")


def download(
    url: str,
    dest: Path,
    policy: DownloadPolicy,
    client: httpx.Client,
    budget: ByteBudget | None = None,
) -> Downloaded:
    """Stream `url` into `dest`, following (and re-checking) redirects by hand.

    Bytes are counted against `budget` (the export's), if given, as they arrive.
    """
    clock = _Clock(policy)
    for _ in range(MAX_REDIRECTS + 1):
        addresses = check_url(url, policy)
        try:
            with closing(_send(client, url, addresses, clock)) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise ExportFailure(
                            "redirect without a Location",
                            cause=FailureCause.CLIP_DOWNLOAD,
                            permanent=True,
                        )
                    url = urljoin(url, location)
                    continue
                _check_status(response)
                with _watchdog(response, clock):
                    return _save(response, dest, policy.max_bytes, clock, budget)
        except httpx.UnsupportedProtocol as exc:
            raise ExportFailure(
                f"URL is not valid: {exc}", cause=FailureCause.INVALID_REQUEST, permanent=True
            ) from exc
        except httpx.HTTPError as exc:
            # Past the deadline, a timeout or a cut connection is the deadline's doing.
            if clock.remaining() <= 0:
                raise clock.deadline_error() from exc
            raise _transient(exc) from exc
    raise ExportFailure(
        f"more than {MAX_REDIRECTS} redirects", cause=FailureCause.CLIP_DOWNLOAD, permanent=True
    )


def _transient(exc: Exception) -> ExportFailure:
    if isinstance(exc, httpx.TimeoutException):
        return ExportFailure(
            f"timed out ({type(exc).__name__})", cause=FailureCause.CLIP_DOWNLOAD, permanent=False
        )
    if isinstance(exc, httpx.DecodingError):
        return ExportFailure(
            f"the CDN sent a body that could not be decoded ({exc})",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
        )
    return ExportFailure(
        f"connection failed ({exc})", cause=FailureCause.CLIP_DOWNLOAD, permanent=False
    )


def _save(
    response: httpx.Response,
    dest: Path,
    max_bytes: int,
    clock: _Clock,
    budget: ByteBudget | None,
) -> Downloaded:
    declared_text = response.headers.get("content-length", "")
    declared = int(declared_text) if declared_text.isascii() and declared_text.isdigit() else None
    if declared is not None and declared > max_bytes:
        raise ExportFailure(
            f"the file is {declared} bytes; the limit per clip is {max_bytes}",
            cause=FailureCause.INVALID_CLIP_FILE,
            permanent=True,
        )
    counted = 0  # bytes counted against the export's budget so far
    if budget is not None and declared is not None:
        budget.take(declared)
        counted = declared
    digest = hashlib.sha256()
    size = 0
    try:
        out = dest.open("wb")
    except OSError as exc:
        raise _disk_error(exc) from exc
    with out:
        # No chunk size: each piece is handed over as it arrives, so the time limits are
        # checked even while a server drips a byte at a time.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ExportFailure(
                    f"the file exceeds the limit per clip of {max_bytes} bytes",
                    cause=FailureCause.INVALID_CLIP_FILE,
                    permanent=True,
                )
            if budget is not None and size > counted:
                budget.take(size - counted)
                counted = size
            clock.check(size)
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _disk_error(exc) from exc
    if declared is not None and size != declared:
        raise ExportFailure(
            f"the download was cut short ({size} of {declared} bytes)",
            cause=FailureCause.CLIP_DOWNLOAD,
            permanent=False,
        )
    return Downloaded(path=dest, sha256=digest.hexdigest(), size_bytes=size)


def _disk_error(exc: OSError) -> ExportFailure:
    # A full or failing disk on our side: the clip itself is fine, a retry may succeed.
    return ExportFailure(
        f"could not write the clip to disk ({exc}); will retry",
        cause=FailureCause.STORAGE,
        permanent=False,
    )


def http_client(policy: DownloadPolicy, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """The client for clip downloads. `verify` is for tests (a throwaway CA); keep True.

    Proxies from the environment are not used: a proxy would make the connection itself,
    to an address we did not check. Connections are not kept alive: a pooled connection is
    keyed by IP address, and must not serve another name whose certificate was never checked.
    """
    timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
    # An explicit transport: httpx then ignores HTTP(S)_PROXY (but still honours
    # SSL_CERT_FILE / SSL_CERT_DIR).
    transport = httpx.HTTPTransport(verify=verify, limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
