# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_hold_and_deadlines -*-
"""Outgoing connections to RPC ports: direct (type byte, or legacy TLS with an inner byte) or via a
mesh gateway (native TLS with ALPN and SNI ``<node>.server.<dc>.<domain>``), as Consul's
ALPN-RPC wrapper does.

``Dialer.dial`` applies the reference's routing rule: a server with a gateway resolver and TLS,
dialing another datacenter, goes through a mesh gateway; everything else dials the server's
address. The Deferred fires with the application protocol once it is connected (after the TLS
handshake and ALPN check, if any); one timeout (10 s by default) covers TCP connect and TLS.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.hostport import split_host_port
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.constants import DEFAULT_DIAL_TIMEOUT, RPCType
from wanfedtx.rpc.errors import ALPNNotNegotiated, DCNotAvailable, DialError
from wanfedtx.rpc.interfaces import IClientTLS, IGatewayResolver

log = Logger(namespace="wanfedtx.rpc")


class Dialer:
    """Dials RPC ports for one agent (its datacenter, role, TLS and gateway resolver)."""

    def __init__(
        self,
        reactor: ReactorLike,
        datacenter: str,
        *,
        server: bool,
        tls: IClientTLS | None = None,
        gateway_resolver: IGatewayResolver | None = None,
        timeout: float = DEFAULT_DIAL_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.datacenter = datacenter
        self.server = server
        self.tls = tls
        self.gateway_resolver = gateway_resolver
        self.timeout = timeout

    def dial(
        self, dc: str, node_name: str, addr: str, rpc_type: RPCType, use_tls: bool,
        app: IProtocol,
    ) -> Deferred[IProtocol]:
        """Connect ``app`` to server ``node_name`` (``addr``) of ``dc`` with ``rpc_type``."""
        if (self.server and self.gateway_resolver is not None and self.tls is not None
                and dc != self.datacenter):
            return self.dial_via_mesh_gateway(dc, node_name, rpc_type, app)
        return self.dial_directly(dc, node_name, addr, rpc_type, use_tls, app)

    def dial_directly(
        self, dc: str, node_name: str, addr: str, rpc_type: RPCType, use_tls: bool,
        app: IProtocol,
    ) -> Deferred[IProtocol]:
        """Type byte only, or outer byte 3 + TLS + the real type byte inside TLS."""
        if use_tls and self.tls is not None and self.tls.outgoing_tls_enabled():
            creator = self.tls.outgoing_rpc_creator(dc)
            if creator is None:
                return _failed(DialError("TLS requested but wrapper is nil"))
            return self._connect(addr, bytes([RPCType.TLS]), creator, None,
                                 bytes([rpc_type]), app)
        return self._connect(addr, bytes([rpc_type]), None, None, b"", app)

    def dial_via_mesh_gateway(
        self, dc: str, node_name: str, rpc_type: RPCType, app: IProtocol,
    ) -> Deferred[IProtocol]:
        """Native TLS to a gateway for ``dc``: ALPN from the type, SNI of the node, no byte."""
        try:
            gw_addr, creator, alpn = self._gateway_route(dc, node_name, rpc_type)
        except DialError as e:
            return _failed(e)
        return self._connect(gw_addr, b"", creator, alpn, b"", app)

    def _gateway_route(
        self, dc: str, node_name: str, rpc_type: RPCType
    ) -> tuple[str, IOpenSSLClientConnectionCreator, str]:
        if not self.server:
            raise DialError("must dial via mesh gateways from a server agent")
        if self.gateway_resolver is None:
            raise DialError("gatewayResolver is nil")
        if self.tls is None:
            raise DialError("tlsConfigurator is nil")
        if dc == self.datacenter:
            raise DialError("cannot dial servers in the same datacenter via a mesh gateway")
        if not self.tls.mutual_tls_capable():
            raise DialError("cannot dial via a mesh gateway when outgoing TLS is disabled")
        alpn = RPCType(rpc_type).alpn_string()
        if not alpn:
            raise DialError(f"rpc type {int(rpc_type)} cannot be routed through a mesh gateway")
        gw_addr = self.gateway_resolver.pick_gateway(dc)
        if not gw_addr:
            raise DCNotAvailable()
        return gw_addr, self.alpn_creator(dc, node_name, alpn), alpn

    def dial_alpn(
        self, addr: str, dc: str, node_name: str, alpn: str, app: IProtocol,
    ) -> Deferred[IProtocol]:
        """Native TLS to ``addr`` (a gateway or the server itself) with SNI for ``node_name``
        in ``dc`` and ALPN ``alpn``; fails with ``ALPNNotNegotiated`` if the server did not
        select it. For protocols without a type byte (``consul/wan-gossip/*``)."""
        try:
            creator = self.alpn_creator(dc, node_name, alpn)
        except DialError as e:
            return _failed(e)
        return self._connect(addr, b"", creator, alpn, b"", app)

    def alpn_creator(self, dc: str, node_name: str, alpn: str
                     ) -> IOpenSSLClientConnectionCreator:
        """The ALPN-RPC wrapper's checks, then the TLS configurator's client creator."""
        if not dc:
            raise DialError("cannot dial using ALPN-RPC without a target datacenter")
        if not node_name:
            raise DialError("cannot dial using ALPN-RPC without a target node")
        if not alpn:
            raise DialError("cannot dial using ALPN-RPC without a target alpn protocol")
        creator = None
        if self.tls is not None and self.tls.mutual_tls_capable():
            creator = self.tls.outgoing_alpn_creator(dc, node_name, alpn)
        if creator is None:
            raise DialError("cannot dial via a mesh gateway when outgoing TLS is disabled")
        return creator

    def dial_insecure(
        self, dc: str, node_name: str, addr: str,
        creator: IOpenSSLClientConnectionCreator, app: IProtocol,
    ) -> Deferred[IProtocol]:
        """RPCTLSInsecure (AutoEncrypt.Sign): byte 7, TLS, no inner byte; same DC only."""
        if dc != self.datacenter:
            return _failed(DialError("insecure dialing prohibited between datacenters"))
        return self._connect(addr, bytes([RPCType.TLS_INSECURE]), creator, None, b"", app)

    def _connect(
        self, addr: str, prefix: bytes, creator: IOpenSSLClientConnectionCreator | None,
        alpn: str | None, inner: bytes, app: IProtocol,
    ) -> Deferred[IProtocol]:
        try:
            host, port = split_host_port(addr)
        except ValueError as e:
            return _failed(DialError(str(e)))
        attempt = _DialAttempt(self.reactor, addr, prefix, creator, alpn, inner, app)
        connector = self.reactor.connectTCP(host, port, attempt, timeout=self.timeout)
        attempt.start_timer(self.timeout, connector)
        return attempt.result


def _failed(exc: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d


class _DialAttempt(ClientFactory):
    """One outgoing connection: TCP, optional prefix bytes, optional TLS, then ``app``."""

    noisy = False

    def __init__(
        self, reactor: IReactorTime, addr: str, prefix: bytes,
        creator: IOpenSSLClientConnectionCreator | None, alpn: str | None, inner: bytes,
        app: IProtocol,
    ) -> None:
        self.reactor = reactor
        self.addr = addr
        self.prefix = prefix
        self.creator = creator
        self.alpn = alpn
        self.inner = inner
        self.app = app
        self.result: Deferred[IProtocol] = Deferred()
        self._timer: IDelayedCall | None = None
        self._connector: IConnector | None = None
        self._socket: _SocketSide | None = None

    def start_timer(self, timeout: float, connector: IConnector) -> None:
        self._connector = connector
        if not self.result.called:
            self._timer = self.reactor.callLater(timeout, self._timed_out, timeout)

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self.fail(DialError(f"dial tcp {self.addr}: i/o timeout after {timeout:g}s"))
        if self._socket is not None and self._socket.transport is not None:
            self._socket.transport.abortConnection()  # type: ignore[attr-defined]
        elif self._connector is not None:
            self._connector.stopConnecting()

    def succeed(self) -> None:
        if self.result.called:
            return
        self._cancel()
        self.result.callback(self.app)

    def fail(self, exc: Exception) -> None:
        if self.result.called:
            return
        self._cancel()
        self.result.errback(exc)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def buildProtocol(self, addr: Any) -> _SocketSide:
        self._socket = _SocketSide(self)
        return self._socket

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.fail(DialError(f"dial tcp {self.addr}: {reason.getErrorMessage()}"))


class _SocketSide(TwistedProtocol):
    def __init__(self, attempt: _DialAttempt) -> None:
        self.attempt = attempt
        self.downstream: Any = None

    def connectionMade(self) -> None:
        a = self.attempt
        transport: Any = self.transport
        try:  # as the reference does for its RPC dials
            transport.setTcpNoDelay(True)
            transport.setTcpKeepAlive(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # in-memory transports
        if a.prefix:
            transport.write(a.prefix)
        if a.creator is None:
            self.downstream = a.app
            a.app.makeConnection(transport)
            a.succeed()
            return
        tls_factory = TLSMemoryBIOFactory(a.creator, True, Factory(), clock=a.reactor)
        gate = _HandshakeGate(a)
        tls_proto: Any = tls_factory.protocol(tls_factory, gate)
        self.downstream = tls_proto
        tls_proto.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self.downstream is not None:
            self.downstream.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        downstream, self.downstream = self.downstream, None
        if downstream is not None:
            downstream.connectionLost(reason)
        self.attempt.fail(DialError(
            f"connection to {self.attempt.addr} closed during setup: {reason.getErrorMessage()}"))


@implementer(IHandshakeListener)
class _HandshakeGate(TwistedProtocol):
    """Inside TLS: waits for the handshake, checks ALPN, writes the inner byte, starts ``app``."""

    def __init__(self, attempt: _DialAttempt) -> None:
        self.attempt = attempt
        self.app: IProtocol | None = None

    def handshakeCompleted(self) -> None:
        a = self.attempt
        transport: Any = self.transport
        if a.alpn is not None:
            raw = transport.negotiatedProtocol
            got = raw.decode("ascii", "replace") if raw else ""
            if got != a.alpn:
                a.fail(ALPNNotNegotiated(a.alpn, got))
                transport.loseConnection()
                return
        if a.inner:
            transport.write(a.inner)
        self.app = a.app
        a.app.makeConnection(transport)
        a.succeed()

    def dataReceived(self, data: bytes) -> None:
        if self.app is not None:
            self.app.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        app, self.app = self.app, None
        if app is not None:
            app.connectionLost(reason)
        else:
            self.attempt.fail(DialError(
                f"TLS handshake with {self.attempt.addr} failed: {reason.getErrorMessage()}"))
