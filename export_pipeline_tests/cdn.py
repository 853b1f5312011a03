"""A stand-in for the clip CDN: a real HTTP server on loopback (127.0.0.1 unless told
otherwise, HTTPS if given a TLS context) serving files from a directory, whose answers a
test can script per path (status codes, cut bodies, drips, silence, ...)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# A fault takes the handler and the file path and answers the request itself; it
# returns True when it answered, False to fall through to serving the file normally.
Fault = Callable[[BaseHTTPRequestHandler, Path], bool]


def stall(seconds: float) -> Fault:
    """Send the headers, then nothing for `seconds` (a read timeout for the client)."""

    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Length", str(path.stat().st_size))
        handler.end_headers()
        handler.wfile.flush()
        time.sleep(seconds)
        return True

    return answer


def cut_short(keep_bytes: int = 1000) -> Fault:
    """Promise the whole file, send `keep_bytes` of it, close the connection."""

    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Length", str(path.stat().st_size))
        handler.end_headers()
        handler.wfile.write(path.read_bytes()[:keep_bytes])
        handler.close_connection = True
        return True

    return answer


def drip(interval_s: float, until: threading.Event, max_s: float = 20.0) -> Fault:
    """Promise the whole file, then send it a byte every `interval_s`: every byte restarts a
    read timeout. Stops when `until` is set, or after `max_s` (the body then cut short)."""

    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        data = path.read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.flush()
        ends = time.monotonic() + max_s
        with contextlib.suppress(OSError):  # the client gave up and hung up
            for byte in data:
                if until.wait(interval_s) or time.monotonic() > ends:
                    break
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        handler.close_connection = True
        return True

    return answer


def silent(until: threading.Event, send_headers: bool = True) -> Fault:
    """Say nothing (after the headers, or not even those) until `until` is set."""

    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        if send_headers:
            handler.send_response(200)
            handler.send_header("Content-Length", str(path.stat().st_size))
            handler.end_headers()
            handler.wfile.flush()
        until.wait()
        handler.close_connection = True
        return True

    return answer


def raw(data: bytes) -> Fault:
    """Answer with `data` as is (e.g. something that is not HTTP), then close."""

    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        handler.wfile.write(data)
        handler.close_connection = True
        return True

    return answer


def no_length(handler: BaseHTTPRequestHandler, path: Path) -> bool:
    """Serve the file without a Content-Length: its end is where the connection closes."""
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(path.read_bytes())
    handler.close_connection = True
    return True


def serve_normally(handler: BaseHTTPRequestHandler, path: Path) -> bool:
    return False


def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Fault:
    def answer(handler: BaseHTTPRequestHandler, path: Path) -> bool:
        handler.send_response(code)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True

    return answer


class FakeCDN:
    """`host` may be another loopback address (127.0.0.2, ::1); `port` 0 picks a free one;
    with `tls` the server speaks HTTPS with that context's certificate."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ):
        self.root = root
        self.host = host
        self.tls = tls
        self.hits: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = {}
        self.host_headers: list[str] = []  # the Host header of every request, in order
        # Set when the server stops: faults that wait (silent, drip) wait on it, so no
        # handler thread outlives the test.
        self.stopping = threading.Event()
        self.faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):  # noqa: N802 - stdlib naming
                name = self.path.lstrip("/").split("?")[0]
                with cdn._lock:
                    cdn.hits[name] += 1
                    cdn.host_headers.append(self.headers.get("Host", ""))
                    cdn.hit_times.setdefault(name, []).append(time.monotonic())
                    queue = cdn.faults.get(name) or []
                    fault = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else None)
                file = cdn.root / name
                if fault and fault(self, file):
                    return
                if not file.is_file():
                    status(404, b"not found")(self, file)
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)
        if tls is not None:
            # The handshake happens in accept(); one a client refuses only loses that request.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        # A short poll interval: shutdown() waits for the loop to notice (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def fail(self, name: str, *faults: Fault) -> None:
        """Answer `name` with these faults in turn; the last one repeats."""
        with self._lock:
            self.faults[name] = list(faults)

    def heal(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self.faults.clear()
            else:
                self.faults.pop(name, None)

    def __enter__(self) -> FakeCDN:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
