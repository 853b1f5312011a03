"""A real S3-compatible server for tests: moto in a child process on 127.0.0.1.

Usage:

    with start_s3_server() as server:        # or: server = start_s3_server(); server.stop()
        client = make_s3_client(server.endpoint_url, session=server.boto_session())
        # or, for code that builds its own client: monkeypatch the variables of server.env()
        server.fail("UploadPart", key="videos/x.mp4", after=1, status=403, code="AccessDenied")
        ...
        [r.operation for r in server.requests()]   # what the server saw, e.g. "UploadPart"

The server runs moto's own WSGI application (what `python -m moto.server` serves) behind a
thin layer that records each S3 request and can answer chosen ones with an error instead.
That layer is driven over HTTP under `/_test/`, a path no bucket can have. Running in a
child process keeps moto's memory and threads out of the test process (so tests can
measure their own memory) and away from any in-process `mock_aws`. The child exits when
the parent closes its stdin, so a crashed test session does not leave it behind.

moto does not verify signatures, but it does refuse unsigned reads of private objects.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import boto3
import httpx

CONTROL_PREFIX = "/_test/"
_READY = "S3_SERVER_READY"

# Credentials the tests hand to boto3; moto accepts any.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class RecordedRequest:
    operation: str  # S3 API name, e.g. "PutObject", "UploadPart", "GetObject"
    method: str
    bucket: str
    key: str
    query: str
    status: int  # HTTP status the client got (including injected failures)


@dataclass(frozen=True)
class FailureRule:
    """Answer matching requests with `status`/`code`, after letting `after` of them through.

    `times=None` fails every later match. botocore retries 5xx answers (with backoff), so
    use a 4xx status such as 403 to make a single attempt fail for good.
    """

    operation: str
    bucket: str | None = None
    key: str | None = None
    after: int = 0
    times: int | None = None
    status: int = 500
    code: str = "InternalError"


def s3_operation(method: str, path: str, query: dict[str, str], headers: Any) -> str:
    """Name the S3 operation of a path-style request (enough for the calls storage makes)."""
    bucket, _, key = path.lstrip("/").partition("/")
    copying = "x-amz-copy-source" in headers
    if not bucket:
        return "ListBuckets" if method == "GET" else method
    if not key:
        bucket_operations = {
            "PUT": "CreateBucket",
            "HEAD": "HeadBucket",
            "DELETE": "DeleteBucket",
            "POST": "DeleteObjects" if "delete" in query else "PostBucket",
        }
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads"
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        return bucket_operations.get(method, method)
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if copying else "UploadPart"
        return "CopyObject" if copying else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    return method


@dataclass
class S3Server:
    """Handle on a running server; `stop()` it (or use it as a context manager)."""

    endpoint_url: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment variables that let boto3 talk to this server (fake credentials)."""
        return dict(FAKE_CREDENTIALS)

    def boto_session(self) -> boto3.session.Session:
        """A boto3 session holding the fake credentials, independent of the environment."""
        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def fail(
        self,
        operation: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        after: int = 0,
        times: int | None = None,
        status: int = 500,
        code: str = "InternalError",
    ) -> None:
        """Make the server refuse matching requests; see `FailureRule`."""
        rule = FailureRule(operation, bucket, key, after, times, status, code)
        self._control("POST", "failures", json=asdict(rule))

    def clear_failures(self) -> None:
        self._control("DELETE", "failures")

    def set_list_page_size(self, size: int | None) -> None:
        """Answer object listings in pages of `size` keys (S3 may send fewer than 1000 per
        page), so tests can exercise pagination without creating 1000 objects; None resets."""
        self._control("POST", "list-page-size", json={"size": size})

    def requests(self) -> list[RecordedRequest]:
        """Requests seen since start (or the last `clear_requests`), oldest first."""
        rows = self._control("GET", "requests").json()
        return [RecordedRequest(**row) for row in rows]

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.stdout:
            self.process.stdout.close()

    def _control(self, method: str, what: str, json: Any = None) -> httpx.Response:
        url = f"{self.endpoint_url}{CONTROL_PREFIX}{what}"
        response = httpx.request(method, url, json=json, timeout=10)
        response.raise_for_status()
        return response

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_s3_server(timeout_s: float = 30.0) -> S3Server:
    """Start the server on a free port of 127.0.0.1 and wait until it accepts requests."""
    # Run as a module (not as a script, whose folder would shadow installed packages) with
    # the project root importable even where the project is not installed.
    project_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "export_pipeline_tests.s3_server"],
            env={**os.environ, "PYTHONPATH": python_path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        line = _read_first_line(process, timeout_s)
        words = line.decode(errors="replace").split()
        if len(words) != 2 or words[0] != _READY:
            process.kill()
            process.wait()
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"S3 test server did not start (output {line!r}):\n{detail}")
    return S3Server(endpoint_url=f"http://127.0.0.1:{words[1]}", process=process)


def _read_first_line(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The child prints its port once it listens: wait for that line rather than a delay."""
    assert process.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 1024)
            if not chunk:  # the child exited
                break
            line += chunk
    return line


# --- the child process ------------------------------------------------------------------


class _TestLayer:
    """WSGI middleware in front of moto: records requests, injects failures, serves /_test/."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.rules: list[tuple[FailureRule, list[int]]] = []  # rule, [matches seen]
        self.log: deque[RecordedRequest] = deque(maxlen=10_000)
        self.list_page_size: int | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)(environ, start_response)

        operation = s3_operation(
            request.method, request.path, request.args.to_dict(), request.headers
        )
        bucket, _, key = request.path.lstrip("/").partition("/")
        key = unquote(key)
        query = environ.get("QUERY_STRING", "")
        page_size = self.list_page_size
        if page_size and operation.startswith("ListObjects") and "max-keys" not in request.args:
            environ["QUERY_STRING"] = f"{query}&max-keys={page_size}".lstrip("&")

        rule = self._matching_rule(operation, bucket, key)
        if rule is not None:
            request.get_data()  # read the body so the client gets our answer, not a reset
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{rule.code}</Code>"
                f"<Message>Injected by the test server</Message></Error>"
            )
            self._record(operation, request.method, bucket, key, query, rule.status)
            response = Response(body, status=rule.status, mimetype="application/xml")
            return response(environ, start_response)

        statuses: list[int] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)

        result = self.app(environ, recording_start_response)
        self._record(operation, request.method, bucket, key, query, statuses[0] if statuses else 0)
        return result

    def _matching_rule(self, operation: str, bucket: str, key: str) -> FailureRule | None:
        with self.lock:
            for rule, seen in self.rules:
                if rule.operation != operation:
                    continue
                if rule.bucket is not None and rule.bucket != bucket:
                    continue
                if rule.key is not None and rule.key != key:
                    continue
                seen[0] += 1
                failures_so_far = seen[0] - rule.after
                if failures_so_far < 1:
                    return None
                if rule.times is None or failures_so_far <= rule.times:
                    return rule
        return None

    def _record(self, *fields: Any) -> None:
        with self.lock:
            self.log.append(RecordedRequest(*fields))

    def _control(self, request: Any) -> Any:
        from werkzeug.wrappers import Response

        what = request.path[len(CONTROL_PREFIX) :]
        with self.lock:
            if what == "failures" and request.method == "POST":
                self.rules.append((FailureRule(**request.get_json()), [0]))
                return Response(status=204)
            if what == "failures" and request.method == "DELETE":
                self.rules.clear()
                return Response(status=204)
            if what == "list-page-size" and request.method == "POST":
                self.list_page_size = request.get_json()["size"]
                return Response(status=204)
            if what == "requests" and request.method == "GET":
                rows = [asdict(row) for row in self.log]
                return Response(json.dumps(rows), mimetype="application/json")
            if what == "requests" and request.method == "DELETE":
                self.log.clear()
                return Response(status=204)
        return Response(f"unknown control request {request.method} {what}", status=404)


def _serve() -> None:
    import logging

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = _TestLayer(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)

    def stop_when_parent_goes() -> None:
        sys.stdin.buffer.read()  # returns when the parent closes the pipe or dies
        server.shutdown()

    threading.Thread(target=stop_when_parent_goes, daemon=True).start()
    print(f"{_READY} {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve()
