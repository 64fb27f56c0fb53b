# -*- test-case-name: tests.unit.connect.test_connect_ca_certs -*-
"""Sans-IO certificate work of the built-in (``consul``) CA provider, with ``cryptography``.

As the reference: root keys are EC P-256 by default (SEC1 ``EC PRIVATE KEY`` PEM); every
SKI/AKI is ``KeyId`` = SHA-256 of the public key's SubjectPublicKeyInfo DER; a root's ``ID`` is
the colon-hex SHA-1 of its DER (59 characters) and ``SigningKeyID`` the colon-hex SKI (95
characters); serials are colon-hex of their big-endian bytes. The root's only URI SAN is the
signing ID ``spiffe://<cluster-id>.consul``; leaves carry
``spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`` and a CN computed from it.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wanfedtx.connect.errors import CAError, CSRError

ROOT_VALIDITY = datetime.timedelta(days=3650)
BACKDATE = datetime.timedelta(minutes=1)
ROOT_NAME = "Consul CA Root Cert"
CROSS_SIGN_VALIDITY = datetime.timedelta(days=7)

_SERVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_SPIFFE_SVC_RE = re.compile(r"^/ns/([^/]+)/dc/([^/]+)/svc/([^/]+)$")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

PublicKey = ec.EllipticCurvePublicKey


def hex_string(data: bytes) -> str:
    """Lower-case hex bytes joined by ``:`` (the reference's ``HexString``)."""
    return ":".join(f"{b:02x}" for b in data)


def serial_hex(serial: int) -> str:
    """A serial as colon-hex of its minimal big-endian bytes (8 -> ``08``, 256 -> ``01:00``)."""
    return hex_string(serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big"))


def is_ca_cert(cert: x509.Certificate) -> bool:
    """Whether the certificate's basic constraints say CA."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def key_id(public_key: PublicKey) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo DER (32 bytes): every SKI/AKI of this CA."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def fingerprint(cert: x509.Certificate) -> str:
    """A root's ``ID``: colon-hex SHA-1 of its DER."""
    return hex_string(cert.fingerprint(hashes.SHA1()))


def signing_id(cluster_id: str) -> str:
    return f"spiffe://{cluster_id}.consul".lower()


def trust_domain(cluster_id: str) -> str:
    return f"{cluster_id}.consul".lower()


def service_id(td: str, dc: str, service: str, namespace: str = "default") -> str:
    return f"spiffe://{td}/ns/{namespace}/dc/{dc}/svc/{service}"


def check_service_name(service: str) -> None:
    """Refuse names a SPIFFE path segment cannot carry (one clear line)."""
    if not _SERVICE_RE.match(service):
        raise CSRError(f"Invalid service: {service!r} (letters, digits, '_', '.', '-' only)")


def compact_uid() -> str:
    """8 random bytes as a signed little-endian int64 in base36, cut to 8, sign dropped."""
    n = int.from_bytes(secrets.token_bytes(8), "little", signed=True)
    digits = ""
    m = abs(n)
    while m:
        m, r = divmod(m, 36)
        digits = _BASE36[r] + digits
    return ("-" + digits if n < 0 else digits or "0")[:8].lstrip("-")


def service_cn(service: str, td: str, namespace: str = "default") -> str:
    """``<svc>.svc.<ns>.<td[:8]>.consul``, cut to fit the 64-character CN limit."""
    svc = re.sub(r"[^a-z0-9]", "", service.lower())
    ns = namespace
    if len(svc) + len(ns) > 43:
        # halves of the 43 characters left (the odd one goes to the service); a name shorter
        # than its half gives the rest to the other
        svc_room = max(22, 43 - len(ns))
        svc = svc[:svc_room]
        ns = ns[: 43 - len(svc)]
    return f"{svc}.svc.{ns}.{td[:8]}.consul"


def ca_cn(primary: bool, cluster_id: str, provider: str = "consul") -> str:
    kind = "pri" if primary else "sec"
    return f"{kind}-{compact_uid()}.{provider[:32]}.ca.{cluster_id[:8]}.consul"


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def load_key(pem: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CAError(f"error parsing private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAError("the CA private key is not an EC key")
    return key


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise CAError(f"error parsing certificate: {exc}") from exc


def _ec_public(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> PublicKey:
    pub = cert_or_csr.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise CSRError(f"invalid key type: {type(pub).__name__}")
    return pub


def generate_root(
    cluster_id: str, serial: int, now: datetime.datetime, key_text: str = ""
) -> tuple[str, str]:
    """A new self-signed root (key PEM, cert PEM), valid 10 years from ``now``; with
    ``key_text`` (an operator's ``PrivateKey``) the root is made for that key."""
    key = load_key(key_text) if key_text else generate_key()
    kid = key_id(key.public_key())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn(True, cluster_id))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(kid), critical=False)
        .add_extension(_aki(kid), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(signing_id(cluster_id))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key_pem(key), cert_pem(cert)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _aki(kid: bytes) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier(kid, None, None)


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def root_row(root_pem: str, cluster_id: str, active: bool = True) -> dict[str, object]:
    """The ``CARoot`` of a root certificate, in the reference's field order."""
    cert = load_cert(root_pem)
    pub = _ec_public(cert)
    fp = fingerprint(cert)
    return {
        "ID": fp,
        "Name": ROOT_NAME,
        "SerialNumber": cert.serial_number,
        "SigningKeyID": hex_string(key_id(pub)),
        "ExternalTrustDomain": cluster_id,
        "NotBefore": _rfc3339(cert.not_valid_before_utc),
        "NotAfter": _rfc3339(cert.not_valid_after_utc),
        "RootCert": root_pem,
        "IntermediateCerts": None,
        "Active": active,
        "PrivateKeyType": "ec",
        "PrivateKeyBits": pub.curve.key_size,
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


def make_leaf_csr(td: str, dc: str, service: str) -> tuple[str, str]:
    """The agent side of a leaf: a new EC P-256 key and its CSR (key PEM, CSR PEM)."""
    check_service_name(service)
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(service_id(td, dc, service))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode()


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, TypeError) as exc:
        raise CSRError(f"error parsing CSR: {exc}") from exc
    try:
        valid = csr.is_signature_valid
        csr.public_key()
        csr.subject  # noqa: B018 - decoded lazily: make it fail here
        csr.extensions  # noqa: B018
    except (ValueError, TypeError) as exc:  # a key or extension that does not decode
        raise CSRError(f"error parsing CSR: {exc}") from exc
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and the like
        raise CSRError(f"error parsing CSR: {type(exc).__name__}: {exc}") from exc
    if not valid:
        raise CSRError("error parsing CSR: the CSR signature is not valid")
    return csr


def csr_uris(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # an extension that does not decode
        raise CSRError(f"error parsing CSR: {exc}") from None
    return [str(u) for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)]


def parse_service_uri(uri: str) -> tuple[str, str, str, str]:
    """(trust domain, namespace, dc, service) of a SPIFFE service ID, or CSRError."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        raise CSRError(f"SPIFFE ID is not in the expected format: {uri}") from None
    if parts.scheme != "spiffe":
        raise CSRError("SPIFFE ID must have 'spiffe' scheme")
    m = _SPIFFE_SVC_RE.match(parts.path)
    if m is None:
        raise CSRError("SPIFFE ID in CSR must be a service or agent ID")
    ns, dc, svc = (unquote(g) for g in m.groups())
    return host, ns, dc, svc


def check_leaf_csr(
    csr_pem: str, td: str, dc: str
) -> tuple[x509.CertificateSigningRequest, str, str, str]:
    """(CSR, URI, namespace, service) of a leaf CSR this datacenter may sign, or CSRError."""
    csr = parse_csr(csr_pem)
    uris = csr_uris(csr)
    if len(uris) != 1:
        raise CSRError(f"CSR must have exactly one URI SAN, got {len(uris)}")
    host, ns, svc_dc, svc = parse_service_uri(uris[0])
    if host.lower() != td.lower():
        raise CSRError(f"SPIFFE ID in CSR from a different trust domain: {host}, we are {td}")
    if svc_dc != dc:
        raise CSRError(f"SPIFFE ID in CSR from a different datacenter: {svc_dc}, we are {dc}")
    _ec_public(csr)
    return csr, uris[0], ns, svc


def sign_leaf(
    csr_pem: str,
    ca_key_pem: str,
    ca_cert_pem: str,
    serial: int,
    now: datetime.datetime,
    ttl: datetime.timedelta,
    td: str,
    dc: str,
) -> str:
    """Sign a service leaf CSR as the reference's ``ConnectCA.Sign`` checks it (PEM)."""
    csr, uri, ns, svc = check_leaf_csr(csr_pem, td, dc)
    pub = _ec_public(csr)
    ca_key = load_key(ca_key_pem)
    ca_cert = load_cert(ca_cert_pem)
    start = now - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service_cn(svc, td, ns))]))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + ttl)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=True, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier(key_id(pub)), critical=False)
        .add_extension(_aki(key_id(ca_key.public_key())), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert_pem(cert)


def verify_signed_by(cert_pem_text: str, issuer_pem: str) -> bool:
    """True when ``issuer``'s key signed ``cert`` (no path or time checks)."""
    cert = load_cert(cert_pem_text)
    issuer = load_cert(issuer_pem)
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def cross_sign(new_root_pem: str, old_key_pem: str, old_root_pem: str, serial: int,
               now: datetime.datetime) -> str:
    """The old root's key vouching for the new root (the reference's ``CrossSignCA``): a copy
    of the new root (subject, key, SKI, URIs, CA flags) issued by the old root, with AKI = the
    old key's ID, valid from now - 1 minute for 7 days. Leaves of the new root then chain to
    the old root through it, so peers that only trust the old root keep working."""
    new = load_cert(new_root_pem)
    old = load_cert(old_root_pem)
    old_key = load_key(old_key_pem)
    if key_id(old_key.public_key()) != key_id(_ec_public(old)):
        raise CAError("the old root's private key does not match its certificate")
    start = now - BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(new.subject)
        .issuer_name(old.subject)
        .public_key(_ec_public(new))
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + CROSS_SIGN_VALIDITY)
    )
    for ext in new.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(ext.value, critical=ext.critical)
    builder = builder.add_extension(_aki(key_id(old_key.public_key())), critical=False)
    return cert_pem(builder.sign(old_key, hashes.SHA256()))


def check_root_pair(key_text: str, root_pem: str) -> None:
    """An operator's ``PrivateKey`` + ``RootCert``: an EC CA certificate for that key, or
    CSRError (a bad request) saying what is wrong."""
    try:
        cert = load_cert(root_pem)
        key = load_key(key_text)
    except CAError as exc:
        raise CSRError(str(exc)) from None
    pub = _ec_public(cert)
    if key_id(key.public_key()) != key_id(pub):
        raise CSRError("the PrivateKey does not match the RootCert's public key")
    if not is_ca_cert(cert):
        raise CSRError("the RootCert is not a CA certificate")
