"""DNS rebinding, played as an attacker would: a resolver whose answer changes between
lookups. Only loopback may be used, so 127.0.0.1 stands for a permitted CDN address (allowed
through `private_networks`) and 127.0.0.2 for a forbidden one, where a second server holds a
secret. The download must reach the genuine clip and never the secret."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from export_pipeline.domain.failures import ExportFailure
from export_pipeline.io.http import (
    DownloadPolicy,
    check_url,
    download,
    http_client,
)
from export_pipeline_tests.cdn import FakeCDN, silent, status

GENUINE = b"genuine clip " * 1000
SECRET = b"instance metadata: the keys to everything"
POLICY = DownloadPolicy(private_networks=("127.0.0.1/32",), allow_http=True, read_timeout_s=5)


class AttackerDNS:
    """socket.getaddrinfo for names under `.test`, answering each lookup of a name with the
    next of its scripted answers (the last one repeats); other names resolve as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]):
        self.answers = {name: list(seq) for name, seq in answers.items()}
        self.lookups: Counter[str] = Counter()
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self._real(host, port, family, type, proto, flags)
        self.lookups[name] += 1
        queue = self.answers[name]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port or 0), 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
            for a in addresses
        ]


def ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def genuine(tmp_path) -> Iterator[FakeCDN]:
    root = tmp_path / "genuine"
    root.mkdir()
    (root / "clip.mp4").write_bytes(GENUINE)
    with FakeCDN(root) as cdn:
        yield cdn


@pytest.fixture
def secret(tmp_path, genuine) -> Iterator[FakeCDN]:
    """The forbidden address, on the genuine server's port: only the IP differs."""
    root = tmp_path / "secret"
    root.mkdir()
    (root / "clip.mp4").write_bytes(SECRET)
    with FakeCDN(root, host="127.0.0.2", port=genuine.port) as cdn:
        yield cdn


def fetch(url: str, tmp_path: Path, policy: DownloadPolicy = POLICY, verify=True):
    with http_client(policy, verify=verify) as client:
        return download(url, tmp_path / "out.bin", policy, client)


def test_first_hop_connects_to_the_address_that_was_checked(monkeypatch, genuine, secret, tmp_path):
    dns = AttackerDNS(monkeypatch, {"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    got = fetch(f"http://rebind.test:{genuine.port}/clip.mp4", tmp_path)
    assert got.path.read_bytes() == GENUINE
    assert secret.total_hits == 0
    assert dns.lookups["rebind.test"] == 1  # resolved once, the answer used to connect
    assert genuine.host_headers == [f"rebind.test:{genuine.port}"]


def test_redirect_hop_connects_to_the_address_that_was_checked(
    monkeypatch, genuine, secret, tmp_path
):
    target = f"http://rebind.test:{genuine.port}/clip.mp4"
    genuine.fail("moved.mp4", status(302, headers={"Location": target}))
    dns = AttackerDNS(monkeypatch, {"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    got = fetch(genuine.url("moved.mp4"), tmp_path)
    assert got.path.read_bytes() == GENUINE
    assert secret.total_hits == 0
    assert genuine.hits == {"moved.mp4": 1, "clip.mp4": 1}
    assert dns.lookups["rebind.test"] == 1
    assert genuine.host_headers[-1] == f"rebind.test:{genuine.port}"


@pytest.mark.parametrize(
    ("answer", "forbidden"),
    [
        (["127.0.0.1", "127.0.0.2"], "127.0.0.2"),
        (["127.0.0.2", "127.0.0.1"], "127.0.0.2"),
        (["127.0.0.1", "169.254.169.254"], "169.254.169.254"),
        (["127.0.0.1", "::ffff:127.0.0.2"], "::ffff:127.0.0.2"),
        (["127.0.0.1", "::ffff:169.254.169.254"], "::ffff:169.254.169.254"),
        (["127.0.0.1", "fe80::1"], "fe80::1"),
        (["127.0.0.1", "::1"], "::1"),
    ],
)
def test_one_forbidden_address_in_the_answer_refuses_the_url(
    monkeypatch, genuine, secret, tmp_path, answer, forbidden
):
    AttackerDNS(monkeypatch, {"rebind.test": [answer]})
    with pytest.raises(ExportFailure) as info:
        fetch(f"http://rebind.test:{genuine.port}/clip.mp4", tmp_path)
    assert info.value.permanent
    assert f"private or reserved address ({forbidden})" in str(info.value)
    assert genuine.total_hits == 0 and secret.total_hits == 0


def test_next_checked_address_is_tried_when_one_refuses_the_connection(
    monkeypatch, genuine, tmp_path
):
    AttackerDNS(monkeypatch, {"rebind.test": [["127.0.0.3", "127.0.0.1"]]})
    policy = DownloadPolicy(
        private_networks=("127.0.0.1/32", "127.0.0.3/32"), allow_http=True, read_timeout_s=5
    )
    got = fetch(f"http://rebind.test:{genuine.port}/clip.mp4", tmp_path, policy)  # .3: refused
    assert got.path.read_bytes() == GENUINE
    assert genuine.hits["clip.mp4"] == 1


def test_ipv4_mapped_form_of_an_allowed_address_is_allowed(monkeypatch, genuine, tmp_path):
    """::ffff:127.0.0.1 is 127.0.0.1: judged (and reached) as that address."""
    AttackerDNS(monkeypatch, {"rebind.test": [["::ffff:127.0.0.1"]]})
    got = fetch(f"http://rebind.test:{genuine.port}/clip.mp4", tmp_path)
    assert got.path.read_bytes() == GENUINE


def test_ip_literal_is_checked_without_a_lookup(monkeypatch, genuine, secret, tmp_path):
    dns = AttackerDNS(monkeypatch, {})
    with pytest.raises(ExportFailure, match=r"private or reserved address \(127\.0\.0\.2\)"):
        fetch(secret.url("clip.mp4"), tmp_path)
    assert check_url(genuine.url("clip.mp4"), POLICY) == ["127.0.0.1"]
    assert secret.total_hits == 0 and sum(dns.lookups.values()) == 0


def test_allow_private_hosts_connects_by_name_without_a_lookup(monkeypatch, genuine, tmp_path):
    dns = AttackerDNS(monkeypatch, {"rebind.test": [["127.0.0.1"]]})
    policy = DownloadPolicy(allow_http=True, allow_private_hosts=True, read_timeout_s=5)
    assert check_url(f"http://rebind.test:{genuine.port}/clip.mp4", policy) is None
    assert dns.lookups["rebind.test"] == 0
    # httpx resolves the name itself (through the same getaddrinfo) and connects
    assert fetch(f"http://rebind.test:{genuine.port}/clip.mp4", tmp_path, policy).size_bytes
    assert dns.lookups["rebind.test"] == 1


@pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")
def test_name_resolving_to_ipv6_loopback_is_fetched_over_ipv6(monkeypatch, tmp_path):
    root = tmp_path / "v6"
    root.mkdir()
    (root / "clip.mp4").write_bytes(GENUINE)
    with FakeCDN(root, host="::1") as cdn:
        dns = AttackerDNS(monkeypatch, {"v6.rebind.test": [["::1"], ["127.0.0.2"]]})
        policy = DownloadPolicy(private_networks=("::1/128",), allow_http=True, read_timeout_s=5)
        got = fetch(f"http://v6.rebind.test:{cdn.port}/clip.mp4", tmp_path, policy)
        assert got.path.read_bytes() == GENUINE
        assert cdn.host_headers == [f"v6.rebind.test:{cdn.port}"]
        assert dns.lookups["v6.rebind.test"] == 1
        # ::1 is refused when it is not allowed
        with pytest.raises(ExportFailure, match=r"private or reserved address \(::1\)"):
            fetch(f"http://[::1]:{cdn.port}/clip.mp4", tmp_path, POLICY)
        assert cdn.total_hits == 1


# ---- TLS: the connection goes to an IP, the certificate is still checked for the name


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class ThrowawayCA:
    """A certificate authority made for one test, and certificates it signs."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("throwaway test CA"))
            .issuer_name(_name("throwaway test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts this CA (and nothing else) verifies with."""
        pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        return ssl.create_default_context(cadata=pem)

    def server_context(self, san: x509.GeneralName, sni_seen: list[str]) -> ssl.SSLContext:
        """A server context with a certificate for `san`, recording each SNI it is sent."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("test server"))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file = self.directory / f"server-{x509.random_serial_number()}.pem"
        cert_file.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        context.sni_callback = lambda _sock, name, _ctx: sni_seen.append(name)
        return context


@pytest.fixture
def ca(tmp_path) -> ThrowawayCA:
    return ThrowawayCA(tmp_path)


@pytest.fixture
def tls_root(tmp_path) -> Path:
    root = tmp_path / "tls"
    root.mkdir()
    (root / "clip.mp4").write_bytes(GENUINE)
    return root


TLS_POLICY = DownloadPolicy(private_networks=("127.0.0.1/32",), read_timeout_s=5)


def test_tls_sni_host_and_certificate_are_for_the_name(monkeypatch, ca, tls_root, tmp_path):
    sni_seen: list[str] = []
    tls = ca.server_context(x509.DNSName("cdn.rebind.test"), sni_seen)
    with FakeCDN(tls_root, tls=tls) as cdn:
        dns = AttackerDNS(monkeypatch, {"cdn.rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
        url = f"https://cdn.rebind.test:{cdn.port}/clip.mp4"
        got = fetch(url, tmp_path, TLS_POLICY, verify=ca.client_context())
        assert got.path.read_bytes() == GENUINE
        assert sni_seen == ["cdn.rebind.test"]
        assert cdn.host_headers == [f"cdn.rebind.test:{cdn.port}"]
        assert dns.lookups["cdn.rebind.test"] == 1
        # the same server is not trusted without the throwaway CA: verification is on
        AttackerDNS(monkeypatch, {"cdn.rebind.test": [["127.0.0.1"]]})
        with pytest.raises(ExportFailure, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(url, tmp_path, TLS_POLICY)


@pytest.mark.parametrize(
    "san",
    [
        pytest.param(x509.DNSName("other.rebind.test"), id="another-name"),
        # Accepted if the certificate were checked against the address connected to.
        pytest.param(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), id="the-ip"),
    ],
)
def test_tls_certificate_for_anything_but_the_name_is_refused(
    monkeypatch, ca, tls_root, tmp_path, san
):
    sni_seen: list[str] = []
    with FakeCDN(tls_root, tls=ca.server_context(san, sni_seen)) as cdn:
        AttackerDNS(monkeypatch, {"cdn.rebind.test": [["127.0.0.1"]]})
        with pytest.raises(ExportFailure) as info:
            fetch(
                f"https://cdn.rebind.test:{cdn.port}/clip.mp4",
                tmp_path,
                TLS_POLICY,
                verify=ca.client_context(),
            )
        assert "certificate verify failed" in str(info.value).lower()
        assert "hostname mismatch" in str(info.value).lower() or "IP address mismatch" in str(
            info.value
        )
        assert sni_seen == ["cdn.rebind.test"]
        assert cdn.total_hits == 0


def test_tls_deadline_cuts_a_silent_server(monkeypatch, ca, tls_root, tmp_path):
    """The deadline's watchdog also wakes a read blocked inside TLS."""
    tls = ca.server_context(x509.DNSName("cdn.rebind.test"), [])
    with FakeCDN(tls_root, tls=tls) as cdn:
        cdn.fail("clip.mp4", silent(cdn.stopping))
        AttackerDNS(monkeypatch, {"cdn.rebind.test": [["127.0.0.1"]]})
        policy = DownloadPolicy(
            private_networks=("127.0.0.1/32",), read_timeout_s=30, deadline_s=1.0, min_kbps=0
        )
        started = time.monotonic()
        with pytest.raises(ExportFailure) as info:
            fetch(
                f"https://cdn.rebind.test:{cdn.port}/clip.mp4",
                tmp_path,
                policy,
                verify=ca.client_context(),
            )
        assert time.monotonic() - started < 5  # not the 30 s read timeout
        assert not info.value.permanent
        assert "did not finish within 1 s" in str(info.value)
