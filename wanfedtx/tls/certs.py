# -*- test-case-name: tests.unit.tls.test_tls_certs,tests.unit.tls.test_tls_cli -*-
"""Agent CA and certificate creation, as ``consul tls ca create`` / ``tls cert create`` do it.

The certificates follow Consul's conventions:

* keys are ECDSA P-256, written as ``EC PRIVATE KEY`` PEM; certificates are signed with SHA-256;
  serial numbers are random 128-bit integers;
* the CA is self-signed with CN ``Consul Agent CA <serial>`` (or ``common_name``), basic
  constraints CA:TRUE, key usage certSign/cRLSign/digitalSignature, subject and authority key ids;
* a server cert for ``dc``/``node`` has CN ``server.<dc>.<domain>``, DNS SANs ``[additional...,
  <node>.server.<dc>.<domain> (only with node), server.<dc>.<domain>, localhost]``,
  IP SANs ``[additional..., 127.0.0.1]`` and EKU serverAuth + clientAuth;
* a client cert has CN ``client.<dc>.<domain>``, DNS SANs ``[additional..., client.<dc>.<domain>,
  localhost]``, IP SANs ``[additional..., 127.0.0.1]``, EKU clientAuth + serverAuth;
* a cli cert has CN ``cli.<dc>.<domain>``, DNS SANs ``[cli.<dc>.<domain>, localhost]``, no IP SAN
  and no EKU extension (Consul silently drops additional names for cli; we refuse them instead);
* every leaf has key usage digitalSignature + keyEncipherment and validity ``now .. now + days``.

File names are Consul's: ``<domain>-agent-ca.pem`` / ``<domain>-agent-ca-key.pem`` and
``<dc>-<kind>-<domain>-<n>.pem`` / ``-<n>-key.pem`` with ``n`` the first free index. Files are
never overwritten; keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wanfedtx.tls.errors import CertificateError, FileExists, NodeRequiresServer, PEMError

CertKind = Literal["server", "client", "cli"]
CERT_KINDS: tuple[CertKind, ...] = ("server", "client", "cli")

#: Consul's defaults.
DEFAULT_DOMAIN = "consul"
DEFAULT_CA_DAYS = 1825
DEFAULT_CERT_DAYS = 365
DEFAULT_DC = "dc1"
#: Highest file index tried before giving up, as Consul does.
MAX_FILE_INDEX = 10000

# A DNS name we are willing to put in a SAN: labels of letters, digits, '-' and '_', optionally a
# leading '*' label (wildcard node certs, ``-node '*'``), no empty labels.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME_RE = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


@attrs.frozen
class CertAndKey:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate (first PEM block)."""
        return load_certificate(self.cert_pem)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The parsed private key."""
        return load_private_key(self.key_pem)


def validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """``(not_before, not_after)`` as UTC-aware datetimes (cryptography 41 and later)."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    before = cert.not_valid_before.replace(tzinfo=datetime.UTC)  # pragma: no cover - old API
    return before, cert.not_valid_after.replace(tzinfo=datetime.UTC)  # pragma: no cover


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    """Parse the first PEM certificate in ``pem``; :class:`PEMError` with a clear message."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise PEMError(f"{what}: no PEM-encoded CERTIFICATE block found")
    try:
        cert = x509.load_pem_x509_certificate(pem)
        cert.subject.rfc4514_string()  # cryptography parses lazily: force the fields we use
        list(cert.extensions)
        cert.public_key()
    except Exception as e:  # ValueError, UnsupportedAlgorithm
        raise PEMError(f"{what}: not a valid PEM certificate ({e})") from None
    return cert


def load_certificates(pem: bytes, what: str = "CA bundle") -> list[x509.Certificate]:
    """Parse every PEM certificate in ``pem`` (at least one), raising :class:`PEMError`."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise PEMError(f"{what}: no PEM-encoded CERTIFICATE block found")
    try:
        certs = x509.load_pem_x509_certificates(pem)
        for c in certs:
            c.subject.rfc4514_string()
            list(c.extensions)
            c.public_key()
    except Exception as e:  # ValueError, UnsupportedAlgorithm
        raise PEMError(f"{what}: not a valid PEM certificate ({e})") from None
    return certs


def load_private_key(pem: bytes, what: str = "private key") -> ec.EllipticCurvePrivateKey:
    """Parse a PEM ECDSA private key (SEC1 or PKCS#8), raising :class:`PEMError`."""
    if b"-----BEGIN" not in pem or b"PRIVATE KEY-----" not in pem:
        raise PEMError(f"{what}: no PEM-encoded PRIVATE KEY block found")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise PEMError(f"{what}: not a usable unencrypted PEM private key ({e})") from None
    except Exception as e:  # cryptography raises UnsupportedAlgorithm for odd keys
        raise PEMError(f"{what}: unsupported private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PEMError(
            f"{what}: is a {type(key).__name__}, but agent TLS keys must be ECDSA "
            "(create them with `wanfed tls ca create` / `wanfed tls cert create`)"
        )
    return key


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 key (what Consul's ``GeneratePrivateKey`` makes)."""
    return ec.generate_private_key(ec.SECP256R1())


def generate_serial_number() -> int:
    """A random positive serial number below 2**128, as Consul makes them."""
    while True:
        n = secrets.randbits(128)
        if n > 0:
            return n


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "EC PRIVATE KEY", like Consul
        serialization.NoEncryption(),
    )


def _now(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    elif now.tzinfo is None:
        raise CertificateError("now must be timezone-aware (e.g. datetime.now(datetime.UTC))")
    return now.astimezone(datetime.UTC).replace(microsecond=0)


def _check_days(days: int, what: str) -> None:
    if isinstance(days, bool) or not isinstance(days, int):
        raise CertificateError(f"-days must be an integer number of days, got {days!r}")
    if days < 1:
        raise CertificateError(f"-days must be at least 1 for the {what}, got {days}")
    if days > 365 * 1000:
        raise CertificateError(f"-days is too large for the {what}: {days}")


def _strip_domain(domain: str) -> str:
    d = domain.strip()
    if d.endswith("."):
        d = d[:-1]
    if not d or not _DNS_NAME_RE.match(d) or d.startswith("*"):
        raise CertificateError(
            f"invalid -domain {domain!r}: use DNS labels of letters, digits, '-' and '_'"
        )
    return d


def _check_dns_name(name: str, flag: str) -> str:
    if not _DNS_NAME_RE.match(name) or len(name) > 253:
        raise CertificateError(
            f"invalid DNS name {name!r} (from {flag}): use DNS labels of letters, digits, "
            "'-' and '_', optionally starting with '*.'"
        )
    return name


def _check_label(value: str, flag: str, *, allow_wildcard: bool = False) -> str:
    if allow_wildcard and value == "*":
        return value
    if not re.fullmatch(_LABEL, value):
        raise CertificateError(
            f"invalid {flag} {value!r}: must be one DNS label of letters, digits, '-' and '_'"
        )
    return value


def _key_identifier(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def create_ca(
    domain: str = DEFAULT_DOMAIN,
    days: int = DEFAULT_CA_DAYS,
    common_name: str | None = None,
    *,
    now: datetime.datetime | None = None,
    name_constraint: bool = False,
    additional_name_constraints: Sequence[str] = (),
) -> CertAndKey:
    """Create a self-signed agent CA (``consul tls ca create``).

    ``domain`` matters only with ``name_constraint``: the CA is then limited (critical name
    constraints) to ``additional_name_constraints + [domain, "localhost"]``, as Consul does.
    """
    _check_days(days, "CA")
    start = _now(now)
    serial = generate_serial_number()
    name = common_name if common_name else f"Consul Agent CA {serial}"
    if len(name) > 64:
        raise CertificateError(f"-common-name is too long ({len(name)} > 64 characters)")
    key = generate_private_key()
    ski = _key_identifier(key.public_key())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wanfedtx"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if name_constraint:
        d = _strip_domain(domain)
        permitted = [
            _check_dns_name(c.strip(), "-additional-name-constraint")
            for c in additional_name_constraints
            if c.strip()
        ] + [d, "localhost"]
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(p) for p in permitted], excluded_subtrees=None
            ),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return CertAndKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def cert_names(
    kind: CertKind,
    *,
    dc: str = DEFAULT_DC,
    node: str = "",
    domain: str = DEFAULT_DOMAIN,
    additional_dnsnames: Sequence[str] = (),
    additional_ipaddresses: Sequence[str] = (),
) -> tuple[str, list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The CN, DNS SANs and IP SANs of a ``kind`` certificate, in Consul's order.

    Raises :class:`NodeRequiresServer` for a node on a non-server cert and
    :class:`CertificateError` for anything unusable.
    """
    if kind not in CERT_KINDS:
        raise CertificateError(f"unknown certificate kind {kind!r}: use server, client or cli")
    if node and kind != "server":
        raise NodeRequiresServer()
    d = _strip_domain(domain)
    _check_label(dc, "-dc")
    if node:
        _check_label(node, "-node", allow_wildcard=True)
    extra_dns = [
        _check_dns_name(n.strip(), "-additional-dnsname") for n in additional_dnsnames if n.strip()
    ]
    extra_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for raw in additional_ipaddresses:
        s = raw.strip()
        if not s:
            continue
        try:
            extra_ips.append(ipaddress.ip_address(s))
        except ValueError:
            raise CertificateError(
                f"invalid IP address {raw!r} (from -additional-ipaddress)"
            ) from None
    loopback = ipaddress.ip_address("127.0.0.1")
    cn = f"{kind}.{dc}.{d}"
    if len(cn) > 64:
        raise CertificateError(
            f"the certificate's common name {cn!r} is longer than X.509's 64 characters: "
            "use a shorter -dc or -domain"
        )
    if kind == "server":
        dns = [*extra_dns]
        if node:
            dns.append(f"{node}.server.{dc}.{d}")
        dns += [cn, "localhost"]
        return cn, dns, [*extra_ips, loopback]
    if kind == "client":
        return cn, [*extra_dns, cn, "localhost"], [*extra_ips, loopback]
    if extra_dns or extra_ips:
        raise CertificateError(
            "-additional-dnsname and -additional-ipaddress do not apply to -cli certificates "
            "(Consul ignores them there); drop them or create a -client certificate"
        )
    return cn, [cn, "localhost"], []


def create_cert(
    ca: CertAndKey,
    kind: CertKind,
    *,
    dc: str = DEFAULT_DC,
    node: str = "",
    domain: str = DEFAULT_DOMAIN,
    days: int = DEFAULT_CERT_DAYS,
    additional_dnsnames: Sequence[str] = (),
    additional_ipaddresses: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> CertAndKey:
    """Create a server, client or cli certificate signed by ``ca`` (``consul tls cert create``)."""
    cn, dns, ips = cert_names(
        kind,
        dc=dc,
        node=node,
        domain=domain,
        additional_dnsnames=additional_dnsnames,
        additional_ipaddresses=additional_ipaddresses,
    )
    _check_days(days, "certificate")
    start = _now(now)
    ca_cert = load_certificate(ca.cert_pem, "CA certificate")
    ca_key = load_private_key(ca.key_pem, "CA key")
    if ca_key.public_key() != ca_cert.public_key():
        raise CertificateError(
            "the CA key does not belong to the CA certificate: pass the matching -ca and -key files"
        )
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ca_ski = _key_identifier(ca_key.public_key())
    key = generate_private_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(generate_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_identifier(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if kind == "server":
        eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    elif kind == "client":
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    else:
        eku = []
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError) as e:  # pragma: no cover - would be a bug in the builder
        raise CertificateError(f"the new certificate does not verify against the CA: {e}") from e
    return CertAndKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


# ---------------------------------------------------------------------------------------------
# Files


def ca_file_names(domain: str = DEFAULT_DOMAIN) -> tuple[str, str]:
    """``(<domain>-agent-ca.pem, <domain>-agent-ca-key.pem)``."""
    return f"{domain}-agent-ca.pem", f"{domain}-agent-ca-key.pem"


def cert_file_prefix(kind: CertKind, dc: str = DEFAULT_DC, domain: str = DEFAULT_DOMAIN) -> str:
    """``<dc>-<kind>-<domain>``, e.g. ``primary-server-consul``."""
    return f"{dc}-{kind}-{domain}"


def next_free_cert_paths(directory: Path | str, prefix: str) -> tuple[Path, Path]:
    """The first ``<prefix>-<n>.pem`` / ``<prefix>-<n>-key.pem`` pair where neither file exists."""
    d = Path(directory)
    for i in range(MAX_FILE_INDEX + 1):
        cert = d / f"{prefix}-{i}.pem"
        key = d / f"{prefix}-{i}-key.pem"
        if not cert.exists() and not key.exists():
            return cert, key
    raise FileExists("Could not find a filename that doesn't already exist")


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; never replace an existing file."""
    if path.exists():
        raise FileExists(f"{path} already exists. Move it away or choose another directory.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if path appeared meanwhile: no overwrite, ever
        except FileExistsError:
            raise FileExists(
                f"{path} already exists. Move it away or choose another directory."
            ) from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_pair(pair: CertAndKey, cert_path: Path | str, key_path: Path | str) -> None:
    """Write a cert (mode 0644) and its key (mode 0600); refuse if either file exists."""
    cp, kp = Path(cert_path), Path(key_path)
    for p in (cp, kp):
        if p.exists():
            raise FileExists(f"{p} already exists. Move it away or choose another directory.")
    _write_new_file(cp, pair.cert_pem, 0o644)
    try:
        _write_new_file(kp, pair.key_pem, 0o600)
    except BaseException:
        cp.unlink(missing_ok=True)
        raise


def write_ca(
    ca: CertAndKey, directory: Path | str = ".", domain: str = DEFAULT_DOMAIN
) -> tuple[Path, Path]:
    """Write ``<domain>-agent-ca.pem`` and ``-key.pem`` into ``directory``; return their paths."""
    cert_name, key_name = ca_file_names(domain)
    d = Path(directory)
    cp, kp = d / cert_name, d / key_name
    for p, name in ((cp, cert_name), (kp, key_name)):
        if p.exists():
            raise FileExists(f"{name} already exists.")
    write_pair(ca, cp, kp)
    return cp, kp


def write_cert(
    pair: CertAndKey,
    kind: CertKind,
    directory: Path | str = ".",
    *,
    dc: str = DEFAULT_DC,
    domain: str = DEFAULT_DOMAIN,
) -> tuple[Path, Path]:
    """Write a cert and key under the first free ``<dc>-<kind>-<domain>-<n>`` name."""
    cp, kp = next_free_cert_paths(directory, cert_file_prefix(kind, dc, domain))
    write_pair(pair, cp, kp)
    return cp, kp


def read_ca(cert_path: Path | str, key_path: Path | str) -> CertAndKey:
    """Read a CA cert and key from files, with Consul's ``Error reading CA`` wording."""
    try:
        cert = Path(cert_path).read_bytes()
    except OSError as e:
        raise PEMError(f"Error reading CA: {e}") from None
    try:
        key = Path(key_path).read_bytes()
    except OSError as e:
        raise PEMError(f"Error reading CA key: {e}") from None
    load_certificate(cert, f"CA certificate {cert_path}")
    load_private_key(key, f"CA key {key_path}")
    return CertAndKey(cert, key)
