"""TLS contexts for the RPC port, modelled on Consul's ``tlsutil.Configurator``.

:class:`TLSSettings` holds the agent's TLS options (``ca_file``, ``cert_file``, ``verify_*``, ...).
:class:`TLSConfigurator` turns them into pyOpenSSL *connection creators* for Twisted's
``TLSMemoryBIOFactory`` / ``TLSMemoryBIOProtocol``:

* :meth:`~TLSConfigurator.incoming_alpn_creator` -- native TLS on :8300 (spec 3.3): client certs
  are required and verified whatever ``verify_incoming`` says, the ALPN list is offered (server
  preference order; no overlap means no ALPN, as Go did), and the peer's certificate *names* are
  checked too (see :func:`peer_identity_problem`).
* :meth:`~TLSConfigurator.outgoing_alpn_creator` -- dialing a server through a mesh gateway
  (spec 3.4): SNI ``server_sni(dc, node)``, our cert presented, the server's chain verified against
  our CAs and its name verified with ``service_identity``; the dialer then checks the
  negotiated ALPN protocol with :func:`check_negotiated_alpn`.
* :meth:`~TLSConfigurator.incoming_rpc_creator` / :meth:`~TLSConfigurator.outgoing_rpc_creator` --
  the legacy ``RPCTLS`` (type byte 3) path with Consul's ``verify_incoming(_rpc)``,
  ``verify_outgoing`` and ``verify_server_hostname`` semantics.

Every creator re-checks the certificate files (``stat``: mtime, size, inode) when it builds a new
connection and reloads them when they changed, so a rotated cert/key/CA is used by the next
handshake. A reload that fails (half-written file, key not matching cert) is logged and the last
good material stays in use.

Verification failures abort the handshake from OpenSSL's verify callback through
``TLSMemoryBIOProtocol.failVerification``: the wrapped protocol never sees ``handshakeCompleted``
and its ``connectionLost`` receives the reason (:class:`~wanfedtx.tls.errors.HostnameMismatch`,
:class:`~wanfedtx.tls.errors.PeerIdentityError`,
:class:`~wanfedtx.tls.errors.CertificateVerifyFailed`). A client that sends no certificate makes
OpenSSL fail the server handshake itself (an ``OpenSSL.SSL.Error``); with TLS 1.3 the client
learns of it only on its next read. An ALPN mismatch is *not* a handshake failure (as in the
reference): the dialer calls :func:`check_negotiated_alpn` in ``handshakeCompleted``.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto
from service_identity import CertificateError as SICertificateError
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.tls.certs import validity
from wanfedtx.tls.errors import (
    ALPNMismatch,
    CertificateVerifyFailed,
    DialError,
    HostnameMismatch,
    PeerIdentityError,
    PEMError,
    TLSConfigError,
    TLSError,
)
from wanfedtx.tls.server_identity import ServerIdentity, authorize_server_conn

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

#: Peer kinds :func:`peer_identity_problem` knows.
PEER_KINDS = ("server", "client")


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


def _strip_dot(domain: str) -> str:
    return domain[:-1] if domain.endswith(".") else domain


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)]


def peer_identity_problem(
    cert: x509.Certificate, domain: str, kinds: Sequence[str] = ("server",)
) -> str | None:
    """Why ``cert`` is not an acceptable peer identity, or ``None`` when it is.

    The rule (docs/decisions.md): the chain was already verified against our CAs; in addition one
    DNS SAN must name an agent of our ``domain`` of an accepted kind, in any datacenter:
    ``server.<dc>.<domain>`` or ``<node>.server.<dc>.<domain>`` for ``"server"``, and
    ``client.<dc>.<domain>`` for ``"client"``. CLI certs (``cli.<dc>.<domain>``) and certs of
    other domains are refused. Only SANs count, never the CN (as service_identity and Go do).
    """
    d = re.escape(_strip_dot(domain).lower())
    label = r"[a-z0-9_-]+"
    patterns = []
    if "server" in kinds:
        patterns.append(re.compile(rf"^(?:(?:{label}|\*)\.)?server\.{label}\.{d}$"))
    if "client" in kinds:
        patterns.append(re.compile(rf"^client\.{label}\.{d}$"))
    names = _dns_names(cert)
    for n in names:
        if any(p.match(n.lower()) for p in patterns):
            return None
    want = " or ".join(
        {
            "server": f"server.<dc>.{_strip_dot(domain)} / <node>.server.<dc>.{_strip_dot(domain)}",
            "client": f"client.<dc>.{_strip_dot(domain)}",
        }[k]
        for k in kinds
    )
    shown = ", ".join(names) if names else "no DNS names"
    return (
        f"peer certificate ({shown}) is not a {'/'.join(kinds)} certificate of domain "
        f"{_strip_dot(domain)!r}: it needs a DNS SAN {want}"
    )


def verify_peer_identity(
    tls_connection: SSL.Connection, domain: str, kinds: Sequence[str] = ("server",)
) -> None:
    """Raise :class:`PeerIdentityError` unless the connected peer's cert passes the name rule.

    The incoming creators already run this check inside the handshake; this function is for code
    that holds a finished connection (e.g. ``transport.getHandle()``).
    """
    peer = tls_connection.get_peer_certificate()
    if peer is None:
        raise PeerIdentityError("the peer presented no certificate")
    problem = peer_identity_problem(peer.to_cryptography(), domain, kinds)
    if problem is not None:
        raise PeerIdentityError(problem)


def negotiated_alpn(tls: Any) -> str:
    """The negotiated ALPN protocol ("" when none) of a TLS transport or ``SSL.Connection``."""
    raw: bytes | None
    if isinstance(tls, SSL.Connection):
        raw = tls.get_alpn_proto_negotiated()
    else:
        raw = getattr(tls, "negotiatedProtocol", None)
    return (raw or b"").decode("ascii", "replace")


def check_negotiated_alpn(tls: Any, wanted: str) -> None:
    """Raise :class:`ALPNMismatch` unless ``wanted`` was negotiated on ``tls``.

    Call it from the client protocol's ``handshakeCompleted`` (then abort the connection): as in
    the reference, the handshake itself completes without a common ALPN protocol, and the dialer
    refuses the connection afterwards. ``tls`` is a ``TLSMemoryBIOProtocol`` (a Twisted TLS
    transport) or an ``SSL.Connection``. The message is the reference's ``could not negotiate
    ALPN protocol %q with %q`` with the wanted and the negotiated protocol ("" for none).
    """
    got = negotiated_alpn(tls)
    if got == wanted:
        return
    conn = tls if isinstance(tls, SSL.Connection) else _handle(tls)
    sni = conn.get_servername() if conn is not None else None
    raise ALPNMismatch(wanted, got, (sni or b"").decode("ascii", "replace"))


def _handle(transport: Any) -> SSL.Connection | None:
    get = getattr(transport, "getHandle", None)
    if get is None:
        return None
    h = get()
    return h if isinstance(h, SSL.Connection) else None


_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate (not signed by a CA in ca_file/ca_path)",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose (wrong extended key usage)",
}


def _verify_error(role: str, err: int, depth: int, cert: crypto.X509) -> CertificateVerifyFailed:
    reason = _VERIFY_ERRORS.get(err, f"X509 verify error {err}")
    try:
        subject = cert.to_cryptography().subject.rfc4514_string()
    except Exception:  # pragma: no cover - defensive: parse failure of a peer cert
        subject = "<unparseable>"
    return CertificateVerifyFailed(
        f"{role} certificate verification failed at depth {depth} ({subject}): {reason}; "
        "check that both sides use certificates signed by the same agent CA",
        code=err,
    )


class _ConnState:
    """Per-connection bookkeeping for the verify callbacks.

    It holds the TLS protocol weakly: the protocol owns the ``SSL.Connection``, which owns the
    callback, which owns this state, so a strong reference would make a cycle per connection.
    """

    def __init__(self, protocol: Any) -> None:
        try:
            self._protocol: Callable[[], Any] = weakref.ref(protocol)
        except TypeError:  # not weak-referenceable (e.g. None in direct tests)
            self._protocol = lambda: protocol
        self.failed = False

    def fail(self, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        proto = self._protocol()
        if proto is not None and hasattr(proto, "failVerification"):
            try:
                raise exc
            except BaseException:
                proto.failVerification(Failure())  # type: ignore[no-untyped-call]


class TLSConfigurator:
    """Builds TLS connection creators from :class:`TLSSettings`; see the module docstring."""

    def __init__(self, settings: TLSSettings, *, log: Logger | None = None) -> None:
        if settings.tls_min_version not in TLS_VERSIONS:
            why = (
                " (TLS 1.0 and 1.1 are refused: insecure, and disabled by OpenSSL 3's default "
                "security level)"
                if settings.tls_min_version in ("tls10", "tls11")
                else ""
            )
            raise TLSConfigError(
                f"TLSMinVersion: value {settings.tls_min_version} not supported, please specify "
                f"one of [{', '.join(sorted(TLS_VERSIONS))}]{why}"
            )
        self.settings = settings
        self._log = log or _log
        self._generation = 0
        self._stamp = _stamp(settings)
        self._material = _load_material(settings, self._generation)
        _check_with_openssl(self._material)
        self._auto_cas: tuple[x509.Certificate, ...] = ()
        self._auto_chain: tuple[x509.Certificate, ...] = ()
        self._auto_key: PrivateKey | None = None
        self._contexts: dict[tuple[Any, ...], SSL.Context] = {}
        self._validate()

    # -- configuration ------------------------------------------------------------------------

    @property
    def domain(self) -> str:
        """The agent domain without a trailing dot."""
        return _strip_dot(self.settings.domain)

    def _all_cas(self) -> tuple[x509.Certificate, ...]:
        return tuple(_dedupe((*self._material.cas, *self._auto_cas)))

    def _chain_and_key(self) -> tuple[tuple[x509.Certificate, ...], PrivateKey | None]:
        # The manual cert wins for serving (Consul's Cert()); auto-encrypt's for client auth, but
        # a single identity per agent is simpler and what every test and deployment here uses.
        if self._material.key is not None:
            return self._material.chain, self._material.key
        return self._auto_chain, self._auto_key

    def _validate(self) -> None:
        s = self.settings
        has_ca = bool(self._all_cas())
        if s.verify_outgoing and not has_ca:
            raise TLSConfigError(
                "VerifyOutgoing set, and no CA certificate provided! Set ca_file or ca_path."
            )
        if s.verify_incoming or s.verify_incoming_rpc:
            if not has_ca:
                raise TLSConfigError(
                    "VerifyIncoming set, and no CA certificate provided! Set ca_file or ca_path."
                )
            if self._chain_and_key()[1] is None:
                raise TLSConfigError(
                    "VerifyIncoming set, and no Cert/Key pair provided! Set cert_file and key_file."
                )

    def mutual_tls_capable(self) -> bool:
        """True when a CA is loaded and a cert+key is present (manual or auto-encrypt)."""
        self._refresh()
        return bool(self._all_cas()) and self._chain_and_key()[1] is not None

    def outgoing_tls_enabled(self) -> bool:
        """Whether the legacy RPC path dials with TLS (Consul: ``verify_outgoing``)."""
        return self.settings.verify_outgoing

    def verify_incoming_rpc(self) -> bool:
        """Consul's ``VerifyIncomingRPC()``: ``verify_incoming || verify_incoming_rpc``."""
        return self.settings.verify_incoming or self.settings.verify_incoming_rpc

    def server_identity_required(self) -> bool:
        """Raft needs a server certificate of this DC with a node name (Consul after PR #11255:
        ``verify_incoming``/``verify_incoming_rpc`` and ``verify_server_hostname`` both on)."""
        return self.verify_incoming_rpc() and self.settings.verify_server_hostname

    def authorize_server_conn(self, transport: Any) -> ServerIdentity:
        """Consul's ``AuthorizeServerConn`` for a finished TLS transport (or ``SSL.Connection``):
        see :mod:`wanfedtx.tls.server_identity`. Only the manual CA pool counts."""
        self._refresh()
        handle = transport if isinstance(transport, SSL.Connection) else _handle(transport)
        return authorize_server_conn(
            handle, self._material.cas, self.settings.datacenter, self.domain
        )

    def server_sni(self, dc: str, node: str) -> str:
        """``server.<dc>.<domain>`` for node "" or "*", else ``<node>.server.<dc>.<domain>``."""
        if node in ("", "*"):
            return f"server.{dc}.{self.domain}"
        return f"{node}.server.{dc}.{self.domain}"

    def update_auto_encrypt_ca(self, ca_pems: Sequence[bytes]) -> None:
        """Add CAs received through auto-encrypt (Consul's ``UpdateAutoEncryptCA``)."""
        cas: list[x509.Certificate] = []
        for i, pem in enumerate(ca_pems):
            cas += _parse_certs(pem, f"auto-encrypt CA #{i}")
        self._auto_cas = tuple(cas)
        self._bump()

    def update_auto_encrypt(
        self, ca_pems: Sequence[bytes], cert_pem: bytes, key_pem: bytes
    ) -> None:
        """Install auto-encrypt CAs and the cert/key it issued (Consul's ``UpdateAutoEncrypt``)."""
        chain = _parse_certs(cert_pem, "auto-encrypt cert")
        key = _parse_key(key_pem, "auto-encrypt key")
        if _public_bytes(key.public_key()) != _public_bytes(chain[0].public_key()):
            raise TLSConfigError("auto-encrypt key does not match the auto-encrypt certificate")
        self.update_auto_encrypt_ca(ca_pems)
        self._auto_chain, self._auto_key = tuple(chain), key
        self._bump()

    def reload(self) -> bool:
        """Re-read the files now; True when the material changed. Raises on bad files."""
        stamp = _stamp(self.settings)
        if stamp == self._stamp:
            return False
        try:
            material = _load_material(self.settings, self._generation + 1)
            _check_with_openssl(material)
        finally:
            # Stamp taken *before* reading: a file that changes while (or after) we read it
            # differs from this stamp and is read again; a bad one is not retried per handshake.
            self._stamp = stamp
        self._material = material
        self._bump()
        self._log.info(
            "TLS certificates reloaded", generation=self._generation, files=[s[0] for s in stamp]
        )
        return True

    def _bump(self) -> None:
        self._generation += 1
        self._contexts.clear()

    def _refresh(self) -> None:
        try:
            self.reload()
        except TLSError as e:
            self._log.warn(
                "TLS certificate reload failed; keeping the previous certificates: {error}",
                error=str(e),
            )

    # -- contexts -----------------------------------------------------------------------------

    def _context(
        self,
        *,
        server: bool,
        alpn_offer: Sequence[str] = (),
        alpn_request: Sequence[str] = (),
        need_cert: bool,
    ) -> SSL.Context:
        self._refresh()
        key = (server, tuple(alpn_offer), tuple(alpn_request), need_cert)
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        chain, pkey = self._chain_and_key()
        if need_cert and pkey is None:
            raise TLSConfigError(
                "this TLS role needs a certificate: set cert_file and key_file "
                "(create them with `wanfed tls cert create -server -dc <dc> -node <node>`)"
            )
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(TLS_VERSIONS[self.settings.tls_min_version])
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET)
        if server:
            # Full handshakes only: every connection is verified against current material.
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        _install_material(ctx, chain, pkey, self._all_cas())
        if alpn_offer:
            offered = [p.encode("ascii") for p in alpn_offer]

            def select(conn: SSL.Connection, client_protos: list[bytes]) -> Any:
                for p in offered:  # server preference, like Go's crypto/tls
                    if p in client_protos:
                        return p
                return SSL.NO_OVERLAPPING_PROTOCOLS

            ctx.set_alpn_select_callback(select)
        if alpn_request:
            ctx.set_alpn_protos([p.encode("ascii") for p in alpn_request])
        self._contexts[key] = ctx
        return ctx

    # -- creators -----------------------------------------------------------------------------

    def incoming_insecure_rpc_creator(self) -> IncomingCreator:
        """Server side of ``RPCTLSInsecure`` (type 7): TLS without client certificates, whatever
        ``verify_incoming`` says (Consul's ``IncomingInsecureRPCConfig``, for AutoEncrypt.Sign)."""
        self._context(server=True, need_cert=True)
        return IncomingCreator(self, (), False, PEER_KINDS)

    def incoming_alpn_creator(
        self, protocols: Sequence[str], *, accept_peer_kinds: Sequence[str] = ("server",)
    ) -> IncomingCreator:
        """Server side of native TLS on the RPC port (Consul's ``IncomingALPNRPCConfig``).

        Client certificates are required and verified against our CAs, and the peer's names must
        pass :func:`peer_identity_problem` for ``accept_peer_kinds`` (servers only by default:
        only servers dial through mesh gateways).
        """
        _check_kinds(accept_peer_kinds)
        protos = tuple(protocols)
        for p in protos:
            if not p or len(p.encode()) > 255 or not p.isascii():
                raise TLSConfigError(f"invalid ALPN protocol name {p!r}")
        self._context(server=True, alpn_offer=protos, need_cert=True)  # fail fast
        return IncomingCreator(self, protos, True, tuple(accept_peer_kinds))

    def incoming_rpc_creator(
        self, *, accept_peer_kinds: Sequence[str] = PEER_KINDS
    ) -> IncomingCreator:
        """Server side of the legacy ``RPCTLS`` path (Consul's ``IncomingRPCConfig``).

        A client certificate is requested, required and verified (chain and names) only when
        ``verify_incoming`` or ``verify_incoming_rpc`` is set.
        """
        _check_kinds(accept_peer_kinds)
        self._context(server=True, need_cert=True)
        return IncomingCreator(self, (), self.verify_incoming_rpc(), tuple(accept_peer_kinds))

    def outgoing_alpn_creator(self, dc: str, node: str, alpn: str) -> OutgoingCreator:
        """Client side of an ALPN dial through a gateway (Consul's ``OutgoingALPNRPCWrapper``).

        Empty inputs raise :class:`DialError` with the reference's messages; so does an agent
        that is not mutual-TLS capable (the reference's nil wrapper), with
        ``cannot dial via a mesh gateway when outgoing TLS is disabled``.
        """
        if not dc:
            raise DialError("cannot dial using ALPN-RPC without a target datacenter")
        if not node:
            raise DialError("cannot dial using ALPN-RPC without a target node")
        if not alpn:
            raise DialError("cannot dial using ALPN-RPC without a target alpn protocol")
        if not self.mutual_tls_capable():
            raise DialError("cannot dial via a mesh gateway when outgoing TLS is disabled")
        sni = self.server_sni(dc, node)
        return OutgoingCreator(self, sni=sni, verify_chain=True, verify_name=sni, alpn=alpn)

    def outgoing_rpc_creator(self, dc: str, node: str = "") -> OutgoingCreator:
        """Client side of the legacy ``RPCTLS`` path (Consul's ``OutgoingRPCWrapper``).

        Only for agents with ``verify_outgoing`` (check :meth:`outgoing_tls_enabled` first; else
        :class:`TLSConfigError`). The server chain is always verified against our CAs; the name
        ``server.<dc>.<domain>`` is sent as SNI and verified only with
        ``verify_server_hostname``. ``node`` is not used: the legacy path names no node. Our
        certificate is presented when we have one.
        """
        if not self.outgoing_tls_enabled():
            raise TLSConfigError(
                "outgoing RPC TLS is disabled (verify_outgoing = false): dial without TLS"
            )
        if self.settings.verify_server_hostname:
            name = self.server_sni(dc, "")
            return OutgoingCreator(self, sni=name, verify_chain=True, verify_name=name, alpn="")
        return OutgoingCreator(self, sni=None, verify_chain=True, verify_name=None, alpn="")


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


def _check_kinds(kinds: Sequence[str]) -> None:
    bad = [k for k in kinds if k not in PEER_KINDS]
    if bad or not kinds:
        raise TLSConfigError(f"accept_peer_kinds must be a non-empty subset of {PEER_KINDS}")


@implementer(IOpenSSLServerConnectionCreator)
class IncomingCreator:
    """Builds server-side ``SSL.Connection`` objects; material is re-checked per connection."""

    def __init__(
        self,
        configurator: TLSConfigurator,
        protocols: tuple[str, ...],
        require_client_cert: bool,
        accept_peer_kinds: tuple[str, ...],
    ) -> None:
        self.configurator = configurator
        self.protocols = protocols
        self.require_client_cert = require_client_cert
        self.accept_peer_kinds = accept_peer_kinds

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        ctx = self.configurator._context(server=True, alpn_offer=self.protocols, need_cert=True)
        conn = SSL.Connection(ctx, None)
        if self.require_client_cert:
            state = _ConnState(tlsProtocol)
            domain = self.configurator.domain
            kinds = self.accept_peer_kinds

            def verify(c: SSL.Connection, cert: crypto.X509, err: int, depth: int, ok: int) -> bool:
                try:
                    if not ok:
                        state.fail(_verify_error("client", err, depth, cert))
                        return False
                    if depth == 0:
                        problem = peer_identity_problem(cert.to_cryptography(), domain, kinds)
                        if problem is not None:
                            state.fail(PeerIdentityError(problem))
                            return False
                    return True
                except Exception as e:  # never let an exception escape into OpenSSL
                    state.fail(PeerIdentityError(f"client certificate check failed: {e!r}"))
                    return False

            conn.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE, verify
            )
        else:
            conn.set_verify(SSL.VERIFY_NONE)
        return conn


@implementer(IOpenSSLClientConnectionCreator)
class OutgoingCreator:
    """Builds client-side ``SSL.Connection`` objects for one target (SNI, name, ALPN)."""

    def __init__(
        self,
        configurator: TLSConfigurator,
        *,
        sni: str | None,
        verify_chain: bool,
        verify_name: str | None,
        alpn: str,
    ) -> None:
        self.configurator = configurator
        self.sni = sni
        self.verify_chain = verify_chain
        self.verify_name = verify_name
        self.alpn = alpn

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        ctx = self.configurator._context(
            server=False, alpn_request=(self.alpn,) if self.alpn else (), need_cert=False
        )
        conn = SSL.Connection(ctx, None)
        if self.sni:
            conn.set_tlsext_host_name(self.sni.encode("ascii"))
        state = _ConnState(tlsProtocol)
        name = self.verify_name

        def verify(c: SSL.Connection, cert: crypto.X509, err: int, depth: int, ok: int) -> bool:
            try:
                if not ok:
                    state.fail(_verify_error("server", err, depth, cert))
                    return False
                if depth != 0:
                    return True
                if name is not None:
                    leaf = cert.to_cryptography()
                    try:
                        verify_certificate_hostname(leaf, name)
                    except (VerificationError, SICertificateError):
                        state.fail(HostnameMismatch(name, _dns_names(leaf)))
                        return False
                return True
            except Exception as e:  # never let an exception escape into OpenSSL
                state.fail(CertificateVerifyFailed(f"server certificate check failed: {e!r}"))
                return False

        if self.verify_chain:
            conn.set_verify(SSL.VERIFY_PEER, verify)
        else:
            conn.set_verify(SSL.VERIFY_NONE)
        return conn
