"""``wanfedtx.tls.server_identity``: the raft peer rule on certificates, without sockets."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from wanfedtx.testing.pki import PKI
from wanfedtx.tls import certs
from wanfedtx.tls.server_identity import check_certificate, expected_name

# Certificates start a few minutes back: verification uses the wall clock, and a clock the host
# steps back (the likely cause) made a fresh certificate "not yet valid" once (a full run,
# session 13).
START = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI(now=START)


def _check(pki: PKI, pair: certs.CertAndKey, dc: str = "dc1") -> tuple[str | None, str | None]:
    leaf = x509.load_pem_x509_certificate(pair.cert_pem)
    ca = x509.load_pem_x509_certificate(pki.ca.cert_pem)
    r = check_certificate(leaf, [], [ca], dc, "consul.")
    return r.node, r.reason


def test_server_of_this_dc_with_node(pki: PKI) -> None:
    assert _check(pki, pki.server("dc1", "s1")) == ("s1", None)
    assert _check(pki, pki.server("dc1", "*")) == ("*", None)


@pytest.mark.parametrize(("make", "why"), [
    (lambda p: p.server("dc2", "s1"), "the certificate names"),
    (lambda p: p.server("dc1", ""), "no node name"),
    (lambda p: p.client("dc1"), "the certificate names"),
    (lambda p: p.cli("dc1"), "the certificate names cli.dc1.consul"),
    (lambda p: PKI(now=START).server("dc1", "s1"), "not signed by a CA in ca_file/ca_path"),
    (lambda p: p.server("dc1", "s1", additional_dnsnames=["s9.server.dc1.consul"]),
     "more than one node name"),
])
def test_refusals_name_the_expected_server(pki: PKI, make: object, why: str) -> None:
    node, reason = _check(pki, make(pki))  # type: ignore[operator]
    assert node is None and reason is not None
    assert reason.startswith("a TLS certificate with a CommonName of server.dc1.consul is "
                             "required for this operation")
    assert why in reason


def test_no_manual_ca_refuses(pki: PKI) -> None:
    leaf = x509.load_pem_x509_certificate(pki.server("dc1", "s1").cert_pem)
    assert check_certificate(leaf, [], [], "dc1", "consul").reason is not None
    assert expected_name("DC1", "consul.") == "server.dc1.consul"
