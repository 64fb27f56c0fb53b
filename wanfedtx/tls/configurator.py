# -*- test-case-name: tests.unit.tls.test_tls_cli,tests.unit.tls.test_tls_configurator -*-
"""TLS contexts for the RPC port, modelled on Consul's ``tlsutil.Configurator``.

:class:`TLSSettings` holds the agent's TLS options (``ca_file``, ``cert_file``, ``verify_*``, ...).
:class:`TLSConfigurator` turns them into pyOpenSSL *connection creators* for Twisted's
``TLSMemoryBIOFactory`` / ``TLSMemoryBIOProtocol``:

* :meth:`~TLSConfigurator.incoming_alpn_creator` -- native TLS on :8300: client certs
  are required and verified whatever ``verify_incoming`` says, the ALPN list is offered (server
  preference order; no overlap means no ALPN, as Go did), and the peer's certificate *names* are
  checked too (see :func:`peer_identity_problem`).
* :meth:`~TLSConfigurator.outgoing_alpn_creator` -- dialing a server through a mesh gateway
 : SNI ``server_sni(dc, node)``, our cert presented, the server's chain verified against
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
Layout: settings and material loading in ``tls/material.py``, peer checks in ``tls/verify.py``,
the connection creators in ``tls/creators.py``; their public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.logger import Logger

from wanfedtx.tls.creators import IncomingCreator, OutgoingCreator, _check_kinds
from wanfedtx.tls.errors import (
    DialError,
    TLSConfigError,
    TLSError,
)
from wanfedtx.tls.material import (
    TLS_VERSIONS,
    PrivateKey,
    TLSSettings,
    _check_with_openssl,
    _dedupe,
    _install_material,
    _load_material,
    _parse_certs,
    _parse_key,
    _public_bytes,
    _stamp,
)
from wanfedtx.tls.server_identity import ServerIdentity, authorize_server_conn, check_certificate
from wanfedtx.tls.verify import (
    PEER_KINDS,
    _handle,
    _strip_dot,
    check_negotiated_alpn,
    negotiated_alpn,
    peer_identity_problem,
    verify_peer_identity,
)

_log = Logger(namespace="wanfedtx.tls")

__all__ = [
    "PEER_KINDS",
    "TLS_VERSIONS",
    "IncomingCreator",
    "OutgoingCreator",
    "PrivateKey",
    "TLSConfigurator",
    "TLSSettings",
    "check_negotiated_alpn",
    "negotiated_alpn",
    "peer_identity_problem",
    "verify_peer_identity",
]


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

    def replace_settings(self, settings: TLSSettings) -> None:
        """New files or verify flags (the agent's reload): checked as a new configurator would
        be (raises, keeping the current ones, when they are bad), then used from the next
        handshake on."""
        if settings == self.settings:
            self.reload()
            return
        fresh = TLSConfigurator(settings, log=self._log)
        self.settings = settings
        self._stamp = fresh._stamp
        self._material = fresh._material
        self._bump()
        self._log.info("TLS configuration reloaded", generation=self._generation)

    def own_server_identity(self) -> ServerIdentity | None:
        """This server's own certificate checked as a peer server checks it (``server.<dc>.
        <domain>`` and one node name); None without a manual certificate."""
        chain = self._material.chain
        if self._material.key is None or not chain:
            return None
        s = self.settings
        return check_certificate(
            chain[0], chain[1:], self._material.cas, s.datacenter, s.domain
        )

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
