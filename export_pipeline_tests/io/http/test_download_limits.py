"""What one download, and one export's downloads, may cost (time, throughput, bytes); and
which failures are permanent (a bad URL) or transient (a full disk, a garbled answer)."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from export_pipeline.defs.export.clips import ClipFetcher
from export_pipeline.domain import status as st
from export_pipeline.domain.failures import ExportFailure
from export_pipeline.domain.request import ClipSpec
from export_pipeline.io.http import (
    ByteBudget,
    DownloadPolicy,
    download,
    http_client,
    url_problem,
)
from export_pipeline.io.storage.local import LocalStorage
from export_pipeline_tests.cdn import FakeCDN, drip, no_length, raw, silent, status
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

CLIP = b"\x00\x01" * 50_000  # 100,000 bytes
LOOPBACK = DownloadPolicy(allow_http=True, private_networks=("127.0.0.1/32",), read_timeout_s=5)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "cdn"
    root.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "clip.mp4"):
        (root / name).write_bytes(CLIP)
    with FakeCDN(root) as cdn:
        yield cdn


def fetch(url: str, dest: Path, policy: DownloadPolicy = LOOPBACK, budget=None):
    with http_client(policy) as client:
        return download(url, dest, policy, client, budget)


# ---- URLs that can never work fail at once, without a lookup or a connection


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a bad URL must not reach the network: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


LABEL_70 = "a" * 70
LONG_HOST = ".".join(["a" * 60] * 5)  # 304 characters


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://cdn.example:99999/a.mp4", "port 99999 is out of range 0-65535"),
        ("https://cdn.example:8x/a.mp4", "port '8x' is not a number"),
        ("https://cdn.example:0/a.mp4", "port 0"),
        (f"https://{LABEL_70}.example/a.mp4", "a label of the host is 70 characters long"),
        (f"https://{LONG_HOST}/a.mp4", "the host is 304 characters long; the limit is 253"),
        ("https://cdn.example/" + "a" * 3000, "the limit is 2048"),
        ("https://cdn.example/" + "a" * 70_000, "the limit is 2048"),  # httpx: "URL too long"
        ("cdn.example/a.mp4", "no scheme"),
        ("ftp://cdn.example/a.mp4", "scheme 'ftp' is not allowed"),
        ("https:///a.mp4", "no host"),
        ("https://user:secret@cdn.example/a.mp4", "user name or password"),
        ("https://cdn.exa mple/a.mp4", "whitespace or control characters"),
        ("https://cdn.example/a\x00.mp4", "whitespace or control characters"),
        ("http://[::1/a.mp4", "cannot be parsed"),
        ("https://\u2603.example/a.mp4", "Invalid IDNA hostname"),
        ("https://a..example/a.mp4", "empty label"),
        ("https://cdn%2eexample/a.mp4", "characters a host name cannot have"),
    ],
)
@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(DownloadPolicy(allow_http=True), id="checked"),
        pytest.param(DownloadPolicy(allow_http=True, allow_private_hosts=True), id="embedded"),
    ],
)
def test_bad_urls_fail_permanently_at_once(no_network, tmp_path, url, message, policy):
    with pytest.raises(ExportFailure) as info:
        fetch(url, tmp_path / "out.bin", policy)
    assert info.value.permanent
    assert str(info.value).startswith("URL is not valid: ")
    assert message in str(info.value)
    assert url_problem(url) and message in url_problem(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example/a.mp4",
        "https://CDN.Example:8443/a/b.mp4?sig=abc%20def&x=1#t",
        "http://127.0.0.1:8080/x.mp4",
        "https://[::1]:443/x.mp4",
        "https://b\u00fccher.example/clip.mp4",
        "https://cdn.example./a.mp4",
        "https://cdn_1.example/a.mp4",
        "https://cdn.example:/a.mp4",
    ],
)
def test_good_urls_have_no_problem(url):
    assert url_problem(url) is None


def test_bad_redirect_target_fails_permanently_after_one_hit(server, tmp_path):
    server.fail("moved.mp4", status(302, headers={"Location": "http://127.0.0.1:99999/a.mp4"}))
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("moved.mp4"), tmp_path / "out.bin")
    assert info.value.permanent and "port 99999 is out of range" in str(info.value)
    assert server.hits["moved.mp4"] == 1


# ---- failures on our side or in the answer are worth a retry


def test_full_disk_is_transient(server):
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), Path("/dev/full"))  # every write: ENOSPC
    assert not info.value.permanent
    assert "could not write the clip to disk" in str(info.value)


def test_unwritable_destination_is_transient(server, tmp_path):
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path)  # a directory
    assert not info.value.permanent and "could not write" in str(info.value)


def test_undecodable_body_is_transient(server, tmp_path):
    garbage = b"this is not gzip at all"
    server.fail("clip.mp4", status(200, garbage, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path / "out.bin")
    assert not info.value.permanent and "could not be decoded" in str(info.value)


def test_garbled_answer_is_transient(server, tmp_path):
    server.fail("clip.mp4", raw(b"SPEAKING NONSENSE\r\n\r\n"))
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path / "out.bin")
    assert not info.value.permanent and "connection failed" in str(info.value)


# ---- time: an overall deadline and a minimum throughput


def test_dripping_cdn_hits_the_deadline(server, tmp_path):
    server.fail("clip.mp4", drip(0.2, server.stopping))
    policy = DownloadPolicy(
        allow_http=True,
        private_networks=("127.0.0.1/32",),
        read_timeout_s=5,
        deadline_s=1.5,
        min_kbps=0,
    )
    started = time.monotonic()
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path / "out.bin", policy)
    assert time.monotonic() - started < 1.5 + 1.0
    assert not info.value.permanent
    assert "did not finish within 1.5 s, the limit per clip" in str(info.value)
    assert "will retry" in str(info.value)


def test_dripping_cdn_is_below_the_minimum_throughput(server, tmp_path):
    server.fail("clip.mp4", drip(0.2, server.stopping))
    policy = DownloadPolicy(
        allow_http=True,
        private_networks=("127.0.0.1/32",),
        read_timeout_s=5,
        deadline_s=30,
        min_kbps=32,
        min_kbps_grace_s=1.0,
    )
    started = time.monotonic()
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path / "out.bin", policy)
    assert time.monotonic() - started < 1.0 + 1.5
    assert not info.value.permanent
    message = str(info.value)
    assert message.startswith("the CDN sent ") and "KB/s; the minimum is 32 KB/s); will retry" in (
        message
    )


def test_fast_download_passes_the_throughput_check(server, tmp_path):
    # The grace period is over at once: only the rate decides.
    policy = DownloadPolicy(
        allow_http=True, private_networks=("127.0.0.1/32",), min_kbps=32, min_kbps_grace_s=0
    )
    assert fetch(server.url("clip.mp4"), tmp_path / "out.bin", policy).size_bytes == len(CLIP)


@pytest.mark.parametrize("send_headers", [True, False], ids=["after-headers", "before-headers"])
def test_silent_cdn_is_cut_at_the_deadline(server, tmp_path, send_headers):
    """A read timeout longer than the deadline does not stretch it."""
    server.fail("clip.mp4", silent(server.stopping, send_headers=send_headers))
    policy = DownloadPolicy(
        allow_http=True,
        private_networks=("127.0.0.1/32",),
        read_timeout_s=30,
        deadline_s=1.0,
        min_kbps=0,
    )
    started = time.monotonic()
    with pytest.raises(ExportFailure) as info:
        fetch(server.url("clip.mp4"), tmp_path / "out.bin", policy)
    assert time.monotonic() - started < 1.0 + 1.5
    assert not info.value.permanent
    assert "did not finish within 1 s" in str(info.value)


# ---- bytes: one budget shared by the downloads of an export


def fetch_all(server, tmp_path: Path, budget: ByteBudget, names=("a.mp4", "b.mp4", "c.mp4")):
    """Downloads `names` at once, as the asset does, sharing `budget`."""
    with http_client(LOOPBACK) as client, ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(download, server.url(n), tmp_path / n, LOOPBACK, client, budget)
            for n in names
        ]
        return [f.exception() or f.result() for f in futures]


def test_export_within_its_byte_budget_passes(server, tmp_path):
    budget = ByteBudget(3 * len(CLIP))
    results = fetch_all(server, tmp_path, budget)
    assert [r.size_bytes for r in results] == [len(CLIP)] * 3
    assert budget.used_bytes == 3 * len(CLIP)


@pytest.mark.parametrize("fault", [None, no_length], ids=["content-length", "no-content-length"])
def test_export_over_its_byte_budget_fails_permanently(server, tmp_path, fault):
    if fault:
        for name in ("a.mp4", "b.mp4", "c.mp4"):
            server.fail(name, fault)
    budget = ByteBudget(3 * len(CLIP) - 1)
    results = fetch_all(server, tmp_path, budget)
    errors = [r for r in results if isinstance(r, ExportFailure)]
    assert errors, "the third clip does not fit"
    assert all(e.permanent for e in errors)
    assert str(errors[0]) == (
        "the clips of this export add up to more than 0.29 MB; the limit per export is 0.29 MB"
    )
    assert budget.used_bytes <= budget.limit_bytes


def test_budget_message_in_whole_megabytes():
    budget = ByteBudget(2 * 1024**2)
    budget.take(2 * 1024**2)
    with pytest.raises(ExportFailure, match="more than 2 MB; the limit per export is 2 MB"):
        budget.take(1)


def test_reused_archived_clip_counts_its_stored_size(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("clips/sha256/abc.mp4", b"x")
    url = "https://cdn.example/archived.mp4"
    entry = {"key": "clips/sha256/abc.mp4", "bytes": 5000, "url": url}
    fetcher = ClipFetcher(storage, None, LOOPBACK, tmp_path, {url: entry}, budget=ByteBudget(4000))
    clip = ClipSpec(position=1, url=url, scene_number=3, trim_start=0.0, duration=None)
    with pytest.raises(ExportFailure) as info:
        fetcher.fetch(clip, client=None)
    assert info.value.permanent
    assert "the limit per export is" in str(info.value)


# ---- the budget through a real run: settings -> ClipDownloads -> downloaded_clips


@pytest.mark.e2e
@pytest.mark.parametrize("spare_bytes", [-1, 0], ids=["over-by-one-byte", "exactly-fits"])
def test_export_byte_limit_in_a_run(settings, store, instance, cdn, spare_bytes):
    names = ("landscape.mp4", "portrait.mp4", "classic.mp4")
    total = sum((cdn.root / name).stat().st_size for name in names)
    settings = settings.replace(downloads={"max_request_mb": (total + spare_bytes) / 1024**2})
    clips = [clip(cdn.url(name), i) for i, name in enumerate(names, start=1)]
    request_id, result, _ = export(settings, store, instance, clips)
    row = store.get(request_id)
    if spare_bytes < 0:
        assert not result.success and row["status"] == st.FAILED
        assert row["retry_count"] == 0  # permanent: not retried
        limit = f"{(total - 1) / 1024**2:.2f}"
        assert (
            f"the clips of this export add up to more than {limit} MB; "
            f"the limit per export is {limit} MB"
        ) in row["error_message"]
    else:
        assert result.success and row["status"] == st.COMPLETE, row["error_message"]
