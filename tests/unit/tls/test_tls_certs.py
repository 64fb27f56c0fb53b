"""Certificate creation: names, SAN order, EKUs, validity, errors, file naming and modes.

Certificates are read back with ``openssl x509 -text -noout`` (an independent parser) as well as
with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wanfedtx.tls import certs
from wanfedtx.tls.errors import CertificateError, FileExists, NodeRequiresServer, PEMError

NOW = datetime.datetime(2026, 3, 9, 12, 0, 0, tzinfo=datetime.UTC)


def span(c: x509.Certificate) -> datetime.timedelta:
    before, after = certs.validity(c)
    return after - before


@pytest.fixture(scope="module")
def ca() -> certs.CertAndKey:
    return certs.create_ca(now=NOW)


def openssl_text(pem: bytes) -> str:
    exe = shutil.which("openssl")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is missing (scripts/apt-packages.txt lists it)")
        pytest.skip("openssl binary not installed")
    out = subprocess.run(
        [exe, "x509", "-text", "-noout"], input=pem, capture_output=True, check=True
    )
    return out.stdout.decode()


def openssl_sans(text: str) -> list[str]:
    m = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.*)\n", text)
    assert m, text
    return [s.strip() for s in m.group(1).split(",")]


def openssl_eku(text: str) -> list[str] | None:
    m = re.search(r"X509v3 Extended Key Usage:.*?\n\s*(.*)\n", text)
    return None if m is None else [s.strip() for s in m.group(1).split(",")]


def san_dns(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName)


def cn(cert: x509.Certificate) -> str:
    v = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(v, str)
    return v


def test_ca_is_self_signed_p256_sha256_ca(ca: certs.CertAndKey) -> None:
    c = ca.certificate
    assert c.issuer == c.subject
    assert cn(c) == f"Consul Agent CA {c.serial_number}"
    assert 0 < c.serial_number < 2**128
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey)
    assert ca.private_key.curve.name == "secp256r1"
    assert ca.key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    bc = c.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
    ski = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    c.verify_directly_issued_by(c)
    text = openssl_text(ca.cert_pem)
    assert "ecdsa-with-SHA256" in text
    assert "CA:TRUE" in text
    assert "NIST CURVE: P-256" in text
    assert certs.validity(c)[0] == NOW
    assert span(c) == datetime.timedelta(days=1825)


def test_ca_common_name_days_and_name_constraints() -> None:
    c = certs.create_ca(
        "example",
        days=10,
        common_name="My CA",
        now=NOW,
        name_constraint=True,
        additional_name_constraints=["ui.example.org"],
    ).certificate
    assert cn(c) == "My CA"
    assert span(c) == datetime.timedelta(days=10)
    nc = c.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert [g.value for g in nc.value.permitted_subtrees or []] == [
        "ui.example.org",
        "example",
        "localhost",
    ]
    assert certs.create_ca().certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    with pytest.raises(x509.ExtensionNotFound):
        certs.create_ca().certificate.extensions.get_extension_for_class(x509.NameConstraints)


def test_server_cert_with_node_matches_reference(ca: certs.CertAndKey) -> None:
    pair = certs.create_cert(ca, "server", dc="primary", node="pri", now=NOW)
    c = pair.certificate
    assert cn(c) == "server.primary.consul"
    text = openssl_text(pair.cert_pem)
    assert openssl_sans(text) == [
        "DNS:pri.server.primary.consul",
        "DNS:server.primary.consul",
        "DNS:localhost",
        "IP Address:127.0.0.1",
    ]
    assert openssl_eku(text) == ["TLS Web Server Authentication", "TLS Web Client Authentication"]
    assert "Subject: CN = server.primary.consul" in text
    assert "Not Before: Mar  9 12:00:00 2026 GMT" in text
    assert "Not After : Mar  9 12:00:00 2027 GMT" in text
    assert "ecdsa-with-SHA256" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "CA:FALSE" in text
    c.verify_directly_issued_by(ca.certificate)
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert pair.private_key.public_key() == c.public_key()


def test_server_cert_without_node_and_reference_test_case(ca: certs.CertAndKey) -> None:
    # tls_cert_create_test.go: -server -node mysrv in dc1
    c = certs.create_cert(ca, "server", node="mysrv").certificate
    assert san_dns(c) == ["mysrv.server.dc1.consul", "server.dc1.consul", "localhost"]
    c = certs.create_cert(ca, "server", dc="secondary").certificate
    assert san_dns(c) == ["server.secondary.consul", "localhost"]


def test_additional_names_come_first(ca: certs.CertAndKey) -> None:
    pair = certs.create_cert(
        ca,
        "server",
        dc="dc2",
        node="n1",
        domain="example",
        additional_dnsnames=[" a.example.org ", "", "*.b.example.org"],
        additional_ipaddresses=["10.0.0.1", " ", "::1"],
        days=30,
        now=NOW,
    )
    text = openssl_text(pair.cert_pem)
    assert openssl_sans(text) == [
        "DNS:a.example.org",
        "DNS:*.b.example.org",
        "DNS:n1.server.dc2.example",
        "DNS:server.dc2.example",
        "DNS:localhost",
        "IP Address:10.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "IP Address:127.0.0.1",
    ]
    c = pair.certificate
    assert span(c) == datetime.timedelta(days=30)


def test_client_cert(ca: certs.CertAndKey) -> None:
    pair = certs.create_cert(ca, "client", dc="dc3", additional_dnsnames=["x.y"])
    text = openssl_text(pair.cert_pem)
    assert "Subject: CN = client.dc3.consul" in text
    assert openssl_sans(text) == [
        "DNS:x.y",
        "DNS:client.dc3.consul",
        "DNS:localhost",
        "IP Address:127.0.0.1",
    ]
    assert openssl_eku(text) == ["TLS Web Client Authentication", "TLS Web Server Authentication"]
    eku = pair.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]


def test_cli_cert(ca: certs.CertAndKey) -> None:
    pair = certs.create_cert(ca, "cli")
    text = openssl_text(pair.cert_pem)
    assert "Subject: CN = cli.dc1.consul" in text
    assert openssl_sans(text) == ["DNS:cli.dc1.consul", "DNS:localhost"]
    assert openssl_eku(text) is None  # Consul sets no EKU on cli certs
    with pytest.raises(CertificateError, match="do not apply to -cli"):
        certs.create_cert(ca, "cli", additional_dnsnames=["x"])


@pytest.mark.parametrize("kind", ["client", "cli"])
def test_node_requires_server(ca: certs.CertAndKey, kind: certs.CertKind) -> None:
    with pytest.raises(NodeRequiresServer) as e:
        certs.create_cert(ca, kind, node="n1")
    assert str(e.value) == "-node requires -server"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dc": ""}, "invalid -dc"),
        ({"dc": "a.b"}, "invalid -dc"),
        ({"node": "a b"}, "invalid -node"),
        ({"domain": ""}, "invalid -domain"),
        ({"days": 0}, "-days must be at least 1"),
        ({"dc": "d" * 30, "domain": "x" * 30}, "longer than X.509's 64 characters"),
        ({"additional_dnsnames": ["bad name"]}, "invalid DNS name 'bad name'"),
        ({"additional_ipaddresses": ["300.1.1.1"]}, "invalid IP address '300.1.1.1'"),
    ],
)
def test_bad_inputs_are_clear_errors(
    ca: certs.CertAndKey, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(CertificateError, match=match):
        certs.create_cert(ca, "server", **kwargs)  # type: ignore[arg-type]


def test_wildcard_node_and_trailing_dot_domain(ca: certs.CertAndKey) -> None:
    c = certs.create_cert(ca, "server", node="*", domain="consul.").certificate
    assert san_dns(c) == ["*.server.dc1.consul", "server.dc1.consul", "localhost"]


def test_mismatched_ca_key_is_refused(ca: certs.CertAndKey) -> None:
    other = certs.create_ca()
    with pytest.raises(CertificateError, match="does not belong"):
        certs.create_cert(certs.CertAndKey(ca.cert_pem, other.key_pem), "server")
    with pytest.raises(PEMError, match="no PEM-encoded CERTIFICATE"):
        certs.create_cert(certs.CertAndKey(b"junk", ca.key_pem), "server")
    with pytest.raises(PEMError, match="PRIVATE KEY"):
        certs.create_cert(certs.CertAndKey(ca.cert_pem, b"junk"), "server")


def test_ip_sans_are_ip_addresses(ca: certs.CertAndKey) -> None:
    c = certs.create_cert(ca, "server").certificate
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ext.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


# --- files ---------------------------------------------------------------------------------


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_write_ca_names_modes_and_refusal(tmp_path: Path, ca: certs.CertAndKey) -> None:
    cp, kp = certs.write_ca(ca, tmp_path)
    assert (cp.name, kp.name) == ("consul-agent-ca.pem", "consul-agent-ca-key.pem")
    assert mode(kp) == 0o600
    assert mode(cp) == 0o644
    assert cp.read_bytes() == ca.cert_pem and kp.read_bytes() == ca.key_pem
    with pytest.raises(FileExists, match=r"consul-agent-ca.pem already exists"):
        certs.write_ca(certs.create_ca(), tmp_path)
    assert cp.read_bytes() == ca.cert_pem  # untouched
    cp2, _ = certs.write_ca(ca, tmp_path, domain="example")
    assert cp2.name == "example-agent-ca.pem"
    # only the key left behind still blocks
    cp.unlink()
    with pytest.raises(FileExists, match=r"consul-agent-ca-key.pem already exists"):
        certs.write_ca(ca, tmp_path)
    assert not cp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "consul-agent-ca-key.pem",
        "example-agent-ca-key.pem",
        "example-agent-ca.pem",
    ]  # no temp files left


def test_write_cert_takes_first_free_index(tmp_path: Path, ca: certs.CertAndKey) -> None:
    pair = certs.create_cert(ca, "server", dc="primary", node="pri")
    a = certs.write_cert(pair, "server", tmp_path, dc="primary")
    assert [p.name for p in a] == ["primary-server-consul-0.pem", "primary-server-consul-0-key.pem"]
    assert mode(a[1]) == 0o600
    b = certs.write_cert(pair, "server", tmp_path, dc="primary")
    assert b[0].name == "primary-server-consul-1.pem"
    a[0].unlink()  # index 0 now has only its key: still taken
    c = certs.write_cert(pair, "server", tmp_path, dc="primary")
    assert c[0].name == "primary-server-consul-2.pem"
    a[1].unlink()
    d = certs.write_cert(pair, "client", tmp_path, dc="primary", domain="ex")
    assert [p.name for p in d] == ["primary-client-ex-0.pem", "primary-client-ex-0-key.pem"]
    e = certs.write_cert(pair, "cli", tmp_path)
    assert e[0].name == "dc1-cli-consul-0.pem"
    f = certs.write_cert(pair, "server", tmp_path, dc="primary")
    assert f[0].name == "primary-server-consul-0.pem"


def test_write_pair_never_overwrites(tmp_path: Path, ca: certs.CertAndKey) -> None:
    (tmp_path / "k.pem").write_bytes(b"keep")
    with pytest.raises(FileExists, match=r"k.pem already exists"):
        certs.write_pair(ca, tmp_path / "c.pem", tmp_path / "k.pem")
    assert not (tmp_path / "c.pem").exists()
    assert (tmp_path / "k.pem").read_bytes() == b"keep"


def test_read_ca_errors(tmp_path: Path, ca: certs.CertAndKey) -> None:
    with pytest.raises(PEMError, match=r"^Error reading CA: "):
        certs.read_ca(tmp_path / "nope.pem", tmp_path / "nope-key.pem")
    cp, kp = certs.write_ca(ca, tmp_path)
    with pytest.raises(PEMError, match=r"^Error reading CA key: "):
        certs.read_ca(cp, tmp_path / "nope-key.pem")
    assert certs.read_ca(cp, kp) == ca
