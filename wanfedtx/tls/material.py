# -*- test-case-name: tests.unit.tls.test_tls_configurator -*-
"""TLS material: the agent's TLS settings, loading CAs, cert chain and key, and installing them.

``TLSSettings`` holds the options (Consul's names). ``_load_material`` reads and checks one
consistent set of CAs, chain and key (PEM errors become ``PEMError``/``TLSConfigError`` with the
file named); ``_stamp`` fingerprints the files (mtime, size, inode) so ``TLSConfigurator`` can
reload them when they change; ``_install_material`` puts them into an OpenSSL context.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto
from twisted.logger import Logger

from wanfedtx.tls.certs import validity
from wanfedtx.tls.errors import (
    PEMError,
    TLSConfigError,
)

_log = Logger(namespace="wanfedtx.tls")

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)

#: Consul's ``tls_min_version`` names we accept (older versions are refused: insecure).
TLS_VERSIONS = {"tls12": SSL.TLS1_2_VERSION, "tls13": SSL.TLS1_3_VERSION}


@attrs.frozen
class TLSSettings:
    """The agent's TLS options (Consul's names). In-memory PEMs are accepted for tests/embedding.

    ``ca_file`` wins over ``ca_path`` (as in Consul). ``ca_pem``/``cert_pem``/``key_pem`` stand in
    for the files and are never reloaded.
    """

    ca_file: str | None = None
    ca_path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_incoming: bool = False
    verify_incoming_rpc: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    domain: str = "consul"
    node_name: str = ""
    datacenter: str = "dc1"
    tls_min_version: str = "tls12"
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


@attrs.frozen
class _Material:
    """One consistent load of CAs, cert chain and key."""

    cas: tuple[x509.Certificate, ...]
    chain: tuple[x509.Certificate, ...]  # leaf first; empty when no cert configured
    key: PrivateKey | None
    generation: int


_Stamp = tuple[tuple[str, int, int, int, int], ...]


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise PEMError(f"{what} {path}: cannot read it: {e.strerror or e}") from None


def _parse_certs(pem: bytes, what: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise PEMError(f"{what}: no PEM-encoded CERTIFICATE block found")
    try:
        parsed = x509.load_pem_x509_certificates(pem)
    except Exception as e:  # ValueError, x509.InvalidVersion, ...
        raise PEMError(f"{what}: not a valid PEM certificate ({e})") from None
    for i, c in enumerate(parsed):
        check_certificate_fields(c, what if len(parsed) == 1 else f"{what} (certificate #{i + 1})")
    return parsed


def check_certificate_fields(c: x509.Certificate, what: str) -> None:
    """Parse every field we use now (cryptography parses lazily), raising :class:`PEMError`."""
    try:
        c.subject.rfc4514_string()
        c.issuer.rfc4514_string()
        list(c.extensions)
        _public_bytes(c.public_key())
        validity(c)
    except Exception as e:  # ValueError, UnsupportedAlgorithm, ...
        raise PEMError(f"{what}: malformed certificate ({e})") from None


def _parse_key(pem: bytes, what: str) -> PrivateKey:
    if b"PRIVATE KEY-----" not in pem:
        raise PEMError(f"{what}: no PEM-encoded PRIVATE KEY block found")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise PEMError(f"{what}: the key is encrypted; agent keys must be unencrypted") from None
    except Exception as e:  # ValueError, UnsupportedAlgorithm
        raise PEMError(f"{what}: not a usable PEM private key ({e})") from None
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
        | dsa.DSAPrivateKey,
    ):
        raise PEMError(f"{what}: unsupported key type {type(key).__name__}")
    return key


def _public_bytes(obj: Any) -> bytes:
    return bytes(
        obj.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _ca_path_files(ca_path: str) -> list[str]:
    if not os.path.isdir(ca_path):
        raise PEMError(f"ca_path {ca_path}: not a directory")
    files: list[str] = []
    for root, dirs, names in os.walk(ca_path):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names))
    return files


def _watched_files(s: TLSSettings) -> list[str]:
    files: list[str] = []
    if s.ca_file:
        files.append(s.ca_file)
    elif s.ca_path:
        files.extend(_ca_path_files(s.ca_path))
    if s.cert_file:
        files.append(s.cert_file)
    if s.key_file:
        files.append(s.key_file)
    return files


def _stamp(s: TLSSettings) -> _Stamp:
    out = []
    try:
        files = _watched_files(s)
    except PEMError:
        return (("<ca_path missing>", 0, 0, 0, 0),)
    for f in files:
        try:
            st = os.stat(f)
            out.append((f, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        except OSError:
            out.append((f, -1, -1, -1, -1))
    return tuple(out)


def _load_material(s: TLSSettings, generation: int) -> _Material:
    cas: list[x509.Certificate] = []
    if s.ca_file:
        cas += _parse_certs(_read(s.ca_file, "ca_file"), f"ca_file {s.ca_file}")
    elif s.ca_path:
        files = _ca_path_files(s.ca_path)
        for f in files:
            if os.path.basename(f).startswith("."):
                continue
            cas += _parse_certs(_read(f, "ca_path file"), f"ca_path file {f}")
        if not cas:
            raise PEMError(f"ca_path {s.ca_path}: Error loading from CAPath: no CAs found")
    if s.ca_pem is not None:
        cas += _parse_certs(s.ca_pem, "ca_pem")
    for c in cas:
        if not _is_ca(c):
            _log.warn(
                "CA file entry {subject} is not a CA certificate (basicConstraints CA:FALSE); "
                "OpenSSL will not accept chains through it",
                subject=c.subject.rfc4514_string(),
            )

    cert_src = s.cert_file or None
    key_src = s.key_file or None
    if s.cert_pem is not None and cert_src:
        raise TLSConfigError("set either cert_file or cert_pem, not both")
    if s.key_pem is not None and key_src:
        raise TLSConfigError("set either key_file or key_pem, not both")
    have_cert = bool(cert_src) or s.cert_pem is not None
    have_key = bool(key_src) or s.key_pem is not None
    if have_cert != have_key:
        missing, present = ("key_file", "cert_file") if have_cert else ("cert_file", "key_file")
        raise TLSConfigError(
            f"{present} is set but {missing} is not: set both (e.g. the two files written by "
            "`wanfed tls cert create`)"
        )
    chain: list[x509.Certificate] = []
    key: PrivateKey | None = None
    if have_cert:
        cert_what = f"cert_file {cert_src}" if cert_src else "cert_pem"
        key_what = f"key_file {key_src}" if key_src else "key_pem"
        cert_pem = _read(cert_src, "cert_file") if cert_src else s.cert_pem
        key_pem = _read(key_src, "key_file") if key_src else s.key_pem
        if cert_pem is None or key_pem is None:
            raise TLSConfigError("cert_file and key_file must be set together")
        chain = _parse_certs(cert_pem, cert_what)
        key = _parse_key(key_pem, key_what)
        if _public_bytes(key.public_key()) != _public_bytes(chain[0].public_key()):
            raise TLSConfigError(
                f"{key_what} does not match the certificate in {cert_what}: "
                "use the key written together with that certificate"
            )
    return _Material(tuple(_dedupe(cas)), tuple(chain), key, generation)


def _is_ca(c: x509.Certificate) -> bool:
    try:
        return bool(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return c.issuer == c.subject  # v1 self-signed roots


def _dedupe(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out = []
    for c in certs:
        fp = c.fingerprint(hashes.SHA256())
        if fp not in seen:
            seen.add(fp)
            out.append(c)
    return out



def _use_cert_and_key(ctx: SSL.Context, chain: Sequence[x509.Certificate], key: PrivateKey) -> None:
    """Install cert chain and key; cryptography objects where pyOpenSSL takes them (>= 24.3)."""
    try:
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)
    except TypeError:  # older pyOpenSSL: only its own X509/PKey wrappers
        ctx.use_certificate(crypto.X509.from_cryptography(chain[0]))
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
    ctx.check_privatekey()


def _install_material(
    ctx: SSL.Context,
    chain: Sequence[x509.Certificate],
    key: PrivateKey | None,
    cas: Sequence[x509.Certificate],
) -> None:
    """Put cert chain, key and trusted CAs into ``ctx``; OpenSSL refusals become TLSConfigError."""
    try:
        if key is not None:
            _use_cert_and_key(ctx, chain, key)
        store = ctx.get_cert_store()
        if store is None:
            raise TLSConfigError("OpenSSL gave the TLS context no certificate store")
        for ca in cas:
            store.add_cert(crypto.X509.from_cryptography(ca))
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise TLSConfigError(f"OpenSSL refused the TLS certificate, key or CA: {e}") from None


def _check_with_openssl(material: _Material) -> None:
    """Fail at load time, not at the next handshake, when OpenSSL cannot use ``material``."""
    _install_material(
        SSL.Context(SSL.TLS_SERVER_METHOD), material.chain, material.key, material.cas
    )
