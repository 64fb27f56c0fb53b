"""The built-in CA's certificate work (``wanfedtx.connect.ca``): root generation, the
reference's colon-hex encodings, leaf SPIFFE SANs and refusals of bad CSRs."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from wanfedtx.connect import ca
from wanfedtx.connect.errors import CSRError

CID = "11111111-2222-3333-4444-555555555555"
TD = f"{CID}.consul"
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def root() -> tuple[str, str]:
    return ca.generate_root(CID, 7, NOW)


def test_hex_encodings() -> None:
    assert ca.hex_string(b"\x00\xab\x10") == "00:ab:10"
    assert ca.serial_hex(8) == "08"
    assert ca.serial_hex(256) == "01:00"
    assert ca.trust_domain(CID.upper()) == TD


def test_root_is_a_p256_self_signed_ca_with_signing_uri(root: tuple[str, str]) -> None:
    key_pem, cert_pem = root
    assert key_pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(cert)
    assert cert.serial_number == 7
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + ca.ROOT_VALIDITY
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str) and cn.startswith("pri-")
    assert cn.endswith(".consul.ca.11111111.consul")


def test_root_row_ids_as_consul_computes_them(root: tuple[str, str]) -> None:
    cert = x509.load_pem_x509_certificate(root[1].encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    row = ca.root_row(root[1], CID)
    sha1 = cert.fingerprint(hashes.SHA1())
    assert row["ID"] == ":".join(f"{b:02x}" for b in sha1) and len(str(row["ID"])) == 59
    skid = hashlib.sha256(spki).digest()
    assert row["SigningKeyID"] == ":".join(f"{b:02x}" for b in skid)
    assert len(str(row["SigningKeyID"])) == 95
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == skid
    assert row["NotBefore"] == "2026-01-02T03:04:05Z"
    assert row["ExternalTrustDomain"] == CID and row["IntermediateCerts"] is None


def test_leaf_has_spiffe_san_cn_and_chains(root: tuple[str, str]) -> None:
    key_pem, root_pem = root
    _, csr = ca.make_leaf_csr(TD, "dc1", "Web_Frontend")
    pem = ca.sign_leaf(csr, key_pem, root_pem, 9, NOW, datetime.timedelta(hours=72), TD, "dc1")
    assert ca.verify_signed_by(pem, root_pem)
    cert = x509.load_pem_x509_certificate(pem.encode())
    uri = f"spiffe://{TD}/ns/default/dc/dc1/svc/Web_Frontend"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "webfrontend.svc.default.11111111.consul"
    assert cert.not_valid_before_utc == NOW - ca.BACKDATE
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=72)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_service_cn_truncates_to_64() -> None:
    cn = ca.service_cn("a" * 60, TD)
    assert len(cn) <= 64


@pytest.mark.parametrize(
    ("td", "dc", "message"),
    [
        ("other.consul", "dc1", "SPIFFE ID in CSR from a different trust domain: other.consul"),
        (TD, "dc2", "SPIFFE ID in CSR from a different datacenter: dc2, we are dc1"),
    ],
)
def test_leaf_refuses_foreign_ids(root: tuple[str, str], td: str, dc: str, message: str) -> None:
    _, csr = ca.make_leaf_csr(td, dc, "web")
    with pytest.raises(CSRError, match=message):
        ca.sign_leaf(csr, root[0], root[1], 9, NOW, datetime.timedelta(hours=1), TD, "dc1")


@pytest.mark.parametrize("csr", ["", "not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                 "-----END CERTIFICATE REQUEST-----\n"])
def test_malformed_csr_is_a_clear_error(root: tuple[str, str], csr: str) -> None:
    with pytest.raises(CSRError, match=r"^error parsing CSR"):
        ca.sign_leaf(csr, root[0], root[1], 9, NOW, datetime.timedelta(hours=1), TD, "dc1")


@pytest.mark.parametrize("name", ["", "a/b", "web service", "x" * 300, "é"])
def test_invalid_service_names(name: str) -> None:
    with pytest.raises(CSRError, match=r"^Invalid service"):
        ca.make_leaf_csr(TD, "dc1", name)


def test_service_cn_keeps_short_names() -> None:
    assert ca.service_cn("web", TD) == "web.svc.default.11111111.consul"
    cn = ca.service_cn("b" * 60, TD, namespace="n" * 40)
    assert cn.startswith("b" * 22 + ".svc." + "n" * 21 + ".")
