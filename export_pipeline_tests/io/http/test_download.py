import hashlib
from pathlib import Path

import pytest

from export_pipeline.domain.failures import ExportFailure, FailureCause
from export_pipeline.io.http import (
    DownloadPolicy,
    check_url,
    download,
    http_client,
)
from export_pipeline_tests.cdn import FakeCDN, status

LOOPBACK_OK = DownloadPolicy(allow_http=True, allow_private_hosts=True, read_timeout_s=5)


@pytest.fixture
def files(tmp_path) -> Path:
    root = tmp_path / "cdn"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"\x00\x01" * 50_000)
    return root


@pytest.fixture
def server(files):
    with FakeCDN(files) as cdn:
        yield cdn


def fetch(url: str, tmp_path: Path, policy: DownloadPolicy = LOOPBACK_OK):
    with http_client(policy) as client:
        return download(url, tmp_path / "out.bin", policy, client)


def test_streams_to_disk_and_hashes(server, files, tmp_path):
    got = fetch(server.url("clip.mp4"), tmp_path)
    data = (files / "clip.mp4").read_bytes()
    assert got.size_bytes == len(data)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.path.read_bytes() == data


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("http://cdn.example/a.mp4", DownloadPolicy(), "scheme 'http' is not allowed"),
        ("file:///etc/passwd", DownloadPolicy(allow_http=True), "scheme 'file' is not allowed"),
        (
            "https://evil.example/a.mp4",
            DownloadPolicy(allowed_hosts=("cdn.example",)),
            "not in the allowed",
        ),
        ("https://127.0.0.1/a.mp4", DownloadPolicy(), "private or reserved address (127.0.0.1)"),
        ("https://169.254.169.254/latest", DownloadPolicy(), "private or reserved"),
        ("https://10.1.2.3/a.mp4", DownloadPolicy(), "private or reserved"),
        ("https://[::1]/a.mp4", DownloadPolicy(), "private or reserved"),
        ("https://localhost/a.mp4", DownloadPolicy(), "private or reserved"),
    ],
)
def test_policy_refuses_unsafe_urls(url, policy, message):
    with pytest.raises(ExportFailure) as info:
        check_url(url, policy)
    assert message in str(info.value)
    assert info.value.permanent and info.value.cause == FailureCause.INVALID_REQUEST


def test_public_address_passes():
    check_url("https://8.8.8.8/clip.mp4", DownloadPolicy())


@pytest.mark.parametrize("code", [401, 403, 404, 410])
def test_gone_is_permanent_and_actionable(server, tmp_path, code):
    server.fail("clip.mp4", status(code))
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path)
    assert info.value.permanent and info.value.cause == FailureCause.EXPIRED_CLIP_URL
    assert "expired or was removed" in str(info.value) and "regenerate the clip" in str(info.value)


def test_server_errors_and_throttling_are_transient(server, tmp_path):
    server.fail("clip.mp4", status(503), status(429, headers={"Retry-After": "7"}))
    with pytest.raises(ExportFailure) as first:
        fetch(server.url("clip.mp4"), tmp_path)
    with pytest.raises(ExportFailure) as second:
        fetch(server.url("clip.mp4"), tmp_path)
    assert not first.value.permanent and "HTTP 503" in str(first.value)
    assert not second.value.permanent and second.value.retry_after_s == 7
    assert first.value.cause == second.value.cause == FailureCause.CLIP_DOWNLOAD


def test_cut_body_is_transient(server, tmp_path):
    def cut(handler, path):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"x" * 1000)
        handler.close_connection = True
        return True

    server.fail("clip.mp4", cut)
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path)
    assert not info.value.permanent


def test_size_limit(server, tmp_path):
    policy = DownloadPolicy(allow_http=True, allow_private_hosts=True, max_bytes=1000)
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path, policy)
    assert info.value.permanent and "limit per clip" in str(info.value)
    assert info.value.cause == FailureCause.INVALID_CLIP_FILE


def test_redirects_are_followed_and_rechecked(server, tmp_path):
    server.fail("moved.mp4", status(302, headers={"Location": "/clip.mp4"}))
    assert fetch(server.url("moved.mp4"), tmp_path).size_bytes == 100_000
    # the same redirect is refused when it leads to a host outside the allow-list
    server.fail("away.mp4", status(302, headers={"Location": "http://localhost:1/secret"}))
    policy = DownloadPolicy(allow_http=True, allow_private_hosts=True, allowed_hosts=("127.0.0.1",))
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("away.mp4"), tmp_path, policy)
    assert "'localhost' is not in the allowed" in str(info.value)


def test_redirect_loop_stops(server, tmp_path):
    server.fail("loop.mp4", status(302, headers={"Location": "/loop.mp4"}))
    with pytest.raises(ExportFailure, match="redirects"):
        fetch(server.url("loop.mp4"), tmp_path)


def test_connection_refused_is_transient(tmp_path):
    with pytest.raises(ExportFailure) as info:
        fetch("http://127.0.0.1:9/clip.mp4", tmp_path)
    assert not info.value.permanent and info.value.cause == FailureCause.CLIP_DOWNLOAD


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("", None), ("soon", None), ("-5", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0)],
)  # fmt: skip
def test_retry_after_reads_seconds_and_http_dates(header, expected):
    """One reader of Retry-After for clip downloads and the webhook: seconds, or an HTTP
    date (counted from now, never negative); anything else says nothing."""
    from datetime import UTC, datetime

    import httpx

    from export_pipeline.io.http import retry_after

    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()
    response = httpx.Response(503, headers={"Retry-After": header} if header else {})
    assert retry_after(response, now=now) == expected
