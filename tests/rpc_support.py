"""Test support for the RPC layer: a TLS provider over pyOpenSSL for the shared test PKI.

Tests only. Certificates come from ``wanfedtx.testing.pki.PKI`` (the one test PKI).
``OpenSSLTLS`` implements ``wanfedtx.rpc.interfaces.IServerTLS`` and ``IClientTLS`` with real
OpenSSL contexts: native TLS requires and verifies client certificates and offers the given ALPN
names (a client with no common name gets no ALPN, as the reference's Go server of this era does);
outgoing dials send SNI ``<node>.server.<dc>.<domain>``, verify the hostname and offer one ALPN.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl as tssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from wanfedtx.testing.pki import PKI
from wanfedtx.tls.certs import CertAndKey


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.ctx, None)


class OpenSSLTLS:
    """``IServerTLS`` + ``IClientTLS`` for one agent holding ``pair`` signed by ``ca``."""

    def __init__(self, ca: PKI | None, pair: CertAndKey | None, *, verify_incoming: bool = False,
                 verify_outgoing: bool = True, domain: str = "consul") -> None:
        self.ca = ca
        self.pair = pair
        self.verify_incoming = verify_incoming
        self.verify_outgoing = verify_outgoing
        self.domain = domain

    # -- IServerTLS
    def mutual_tls_capable(self) -> bool:
        return self.ca is not None and self.pair is not None

    def verify_incoming_rpc(self) -> bool:
        return self.verify_incoming

    def _server_ctx(self, require_client: bool) -> SSL.Context:
        assert self.ca is not None and self.pair is not None
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        # pyOpenSSL objects (not cryptography ones) so the oldest supported pyOpenSSL works too.
        cert = x509.load_pem_x509_certificate(self.pair.cert_pem)
        key: Any = serialization.load_pem_private_key(self.pair.key_pem, None)
        ctx.use_certificate(crypto.X509.from_cryptography(cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
        store = ctx.get_cert_store()
        assert store is not None
        store.add_cert(crypto.X509.from_cryptography(self.ca.ca.certificate))
        if require_client:
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                           lambda *a: bool(a[-1]))
        return ctx

    def incoming_alpn_creator(self, protocols: Sequence[str]) -> IOpenSSLServerConnectionCreator:
        ctx = self._server_ctx(require_client=True)
        offered = [p.encode() for p in protocols]

        def select(conn: SSL.Connection, client: list[bytes]) -> bytes | object:
            for p in client:
                if p in offered:
                    return p
            return SSL.NO_OVERLAPPING_PROTOCOLS

        ctx.set_alpn_select_callback(select)
        return _ServerCreator(ctx)

    def incoming_rpc_creator(self) -> IOpenSSLServerConnectionCreator:
        return _ServerCreator(self._server_ctx(require_client=self.verify_incoming))

    def incoming_insecure_rpc_creator(self) -> IOpenSSLServerConnectionCreator:
        return _ServerCreator(self._server_ctx(require_client=False))

    # -- IClientTLS
    def outgoing_tls_enabled(self) -> bool:
        return self.verify_outgoing and self.ca is not None

    def server_sni(self, dc: str, node: str) -> str:
        if node in ("", "*"):
            return f"server.{dc}.{self.domain}"
        return f"{node}.server.{dc}.{self.domain}"

    def client_creator(self, hostname: str, alpn: list[bytes] | None
                        ) -> IOpenSSLClientConnectionCreator:
        assert self.ca is not None
        client = None
        if self.pair is not None:
            client = tssl.PrivateCertificate.loadPEM(self.pair.cert_pem + self.pair.key_pem)
        return tssl.optionsForClientTLS(
            hostname, trustRoot=tssl.Certificate.loadPEM(self.ca.ca_pem),
            clientCertificate=client, acceptableProtocols=alpn)

    def outgoing_alpn_creator(self, dc: str, node: str, alpn: str
                              ) -> IOpenSSLClientConnectionCreator | None:
        if not self.mutual_tls_capable():
            return None
        return self.client_creator(self.server_sni(dc, node), [alpn.encode()])

    def outgoing_rpc_creator(self, dc: str) -> IOpenSSLClientConnectionCreator | None:
        if not self.outgoing_tls_enabled():
            return None
        return self.client_creator(f"server.{dc}.{self.domain}", None)


def server_tls(ca: PKI, dc: str, node: str, **kw: bool) -> OpenSSLTLS:
    return OpenSSLTLS(ca, ca.server(dc, node), **kw)


# -- in-memory connections ------------------------------------------------------------------

from typing import Any  # noqa: E402

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.internet.interfaces import IProtocol  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402


class Link:
    """A server and a client protocol joined by ``StringTransport``s and pumped by hand.

    ``chunk`` limits how many bytes one delivery carries (1 delivers a byte at a time)."""

    def __init__(self, server: IProtocol, client: IProtocol, clock: Clock,
                 chunk: int | None = None) -> None:
        self.server, self.client, self.clock, self.chunk = server, client, clock, chunk
        self.st = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8300),
                                  peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.ct = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 50000),
                                  peerAddress=IPv4Address("TCP", "127.0.0.1", 8300))
        self.lost = False
        server.makeConnection(self.st)
        client.makeConnection(self.ct)

    def _deliver(self, proto: IProtocol, data: bytes) -> None:
        step = self.chunk or len(data)
        for i in range(0, len(data), step):
            if self.lost:
                return
            proto.dataReceived(data[i : i + step])

    def pump(self, rounds: int = 100) -> None:
        for _ in range(rounds):
            self.clock.advance(0)
            c, s = self.ct.value(), self.st.value()
            self.ct.clear()
            self.st.clear()
            if c and not self.lost:
                self._deliver(self.server, c)
            if s and not self.lost:
                self._deliver(self.client, s)
            if (self.st.disconnecting or self.ct.disconnecting) and not self.lost:
                if self.ct.value() or self.st.value():
                    continue
                self.disconnect()
            if not c and not s:
                break

    def disconnect(self) -> None:
        if self.lost:
            return
        self.lost = True
        self.server.connectionLost(Failure(ConnectionDone()))
        self.client.connectionLost(Failure(ConnectionDone()))


class Recorder(Protocol):
    """Records what it receives; used as a handler's protocol or a raw client."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


class RecordingHandler:
    """An ``IRPCHandler`` that records the connections it gets."""

    def __init__(self) -> None:
        self.infos: list[Any] = []
        self.protocols: list[Recorder] = []

    def build_protocol(self, conn: Any) -> Recorder:
        self.infos.append(conn)
        p = Recorder()
        self.protocols.append(p)
        return p


# -- a small SNI router (tests and benchmarks only) -----------------------------------------

import struct  # noqa: E402

from twisted.internet.protocol import ClientFactory, Factory  # noqa: E402


class NeedMore(Exception):
    pass


def parse_sni(buf: bytes) -> str | None:
    """The SNI of the TLS ClientHello at the start of ``buf``; NeedMore if it is incomplete."""
    if len(buf) < 5:
        raise NeedMore()
    ctype, _ver, rlen = struct.unpack(">BHH", buf[:5])
    if ctype != 22:
        raise ValueError("not a TLS handshake record")
    if len(buf) < 5 + rlen:
        raise NeedMore()
    hs = buf[5 : 5 + rlen]
    if hs[0] != 1:
        raise ValueError("not a ClientHello")
    hlen = int.from_bytes(hs[1:4], "big")
    if hlen + 4 > len(hs):
        raise ValueError("ClientHello spans records; not supported by this test router")
    p = 4 + 2 + 32
    p += 1 + hs[p]
    p += 2 + int.from_bytes(hs[p : p + 2], "big")
    p += 1 + hs[p]
    if p + 2 > len(hs):
        return None
    end = p + 2 + int.from_bytes(hs[p : p + 2], "big")
    p += 2
    while p + 4 <= end:
        etype, elen = struct.unpack(">HH", hs[p : p + 4])
        data = hs[p + 4 : p + 4 + elen]
        if etype == 0:
            nlen = int.from_bytes(data[3:5], "big")
            return data[5 : 5 + nlen].decode("ascii")
        p += 4 + elen
    return None


class _Backend(Protocol):
    def __init__(self, front: _Front) -> None:
        self.front = front

    def connectionMade(self) -> None:
        self.front.backend_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.front.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.front.transport.loseConnection()  # type: ignore[union-attr]


class _BackendFactory(ClientFactory):
    def __init__(self, front: _Front) -> None:
        self.front = front

    def buildProtocol(self, addr: Any) -> _Backend:
        return _Backend(self.front)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.front.transport.loseConnection()  # type: ignore[union-attr]


class _Front(Protocol):
    def __init__(self, router: SNIRouter) -> None:
        self.router = router
        self.buf = b""
        self.backend: _Backend | None = None
        self.routed = False

    def dataReceived(self, data: bytes) -> None:
        if self.backend is not None:
            self.backend.transport.write(data)  # type: ignore[union-attr]
            return
        self.buf += data
        if self.routed:
            return
        try:
            sni = parse_sni(self.buf)
        except NeedMore:
            return
        except ValueError:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        target = self.router.route(sni)
        self.router.seen.append(sni)
        if target is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.routed = True
        host, port = target.rsplit(":", 1)
        self.router.reactor.connectTCP(host, int(port), _BackendFactory(self))

    def backend_ready(self, backend: _Backend) -> None:
        self.backend = backend
        try:
            backend.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        except Exception:
            pass
        backend.transport.write(self.buf)  # type: ignore[union-attr]
        self.buf = b""

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.backend is not None:
            self.backend.transport.loseConnection()  # type: ignore[union-attr]


class SNIRouter(Factory):
    """Routes TLS connections by exact SNI to ``host:port`` without terminating TLS."""

    def __init__(self, reactor: Any, routes: dict[str, str] | None = None) -> None:
        self.reactor = reactor
        self.routes: dict[str, str] = dict(routes or {})
        self.seen: list[str | None] = []

    def route(self, sni: str | None) -> str | None:
        return self.routes.get(sni or "")

    def buildProtocol(self, addr: Any) -> _Front:
        return _Front(self)
