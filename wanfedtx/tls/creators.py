# -*- test-case-name: tests.unit.tls.test_tls_configurator -*-
"""pyOpenSSL connection creators for Twisted's ``TLSMemoryBIOFactory``, made by ``TLSConfigurator``.

``IncomingCreator`` (server side: client certificate required or not, peer kinds checked) and
``OutgoingCreator`` (client side: SNI, chain and hostname verification, ALPN) build one
``SSL.Connection`` per connection from the configurator's current context, so rotated material
is used by the next handshake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, crypto
from service_identity import CertificateError as SICertificateError
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from wanfedtx.tls.errors import (
    CertificateVerifyFailed,
    HostnameMismatch,
    PeerIdentityError,
    TLSConfigError,
)
from wanfedtx.tls.verify import (
    PEER_KINDS,
    _ConnState,
    _dns_names,
    _verify_error,
    peer_identity_problem,
)

if TYPE_CHECKING:
    from wanfedtx.tls.configurator import TLSConfigurator


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
