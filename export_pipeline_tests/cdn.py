"""A stand-in for the clip CDN: a real HTTP server on 127.0.0.1 serving files from a
directory, whose answers a test can script per path (status codes, cut bodies, ...)."""

from __future__ import annotations

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
    def __init__(self, root: Path):
        self.root = root
        self.hits: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = {}
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

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
        self.server.shutdown()
        self.server.server_close()
