"""The :8300 RPC port: Twisted adapters around the sniffer, wrap-mode TLS and handler dispatch.

``RPCPortFactory.buildProtocol`` returns a ``SniffingProtocol`` per connection. It feeds bytes to
``sniff.Sniffer`` until a decision, then:

* legacy type byte: hands the connection to the handler registered for that byte;
* native TLS ("wrap mode"): builds a ``TLSMemoryBIOProtocol`` itself over the socket transport,
  feeds it the bytes already read, and picks the handler in ``handshakeCompleted`` from the
  negotiated ALPN;
* legacy RPCTLS (3): TLS first, then the inner type byte; RPCTLSInsecure (7): TLS without client
  certificates, then the type-7 handler.

One timer (``handshake_timeout``, the reference's ``rpc_handshake_timeout``) covers the first
byte, the TLS handshake and the inner type byte; it is cancelled when a handler takes over.
``RPCPortService`` listens on an endpoint and closes every connection on stop.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.rpc import sniff
from wanfedtx.rpc.constants import (
    ALPN_RPC_RAFT,
    DEFAULT_RPC_HANDSHAKE_TIMEOUT,
    RPC_NEXT_PROTOS,
    RPCType,
)
from wanfedtx.rpc.interfaces import ConnectionInfo, IServerTLS
from wanfedtx.rpc.registry import HandlerRegistry

log = Logger(namespace="wanfedtx.rpc")

MSG_DETECTED_TLS = "detected actual TLS over RPC port"
MSG_FIRST_BYTE = "failed to read first byte"
MSG_HANDSHAKE_FAILED = "TLS handshake failed"
MSG_ACCEPTED_NATIVE = "accepted nativeTLS RPC"
MSG_UNKNOWN_ALPN = "discarding RPC for unknown negotiated protocol"
MSG_TLS_NOT_CONFIGURED = "TLS connection attempted but TLS is not configured on this server"


def _peer(transport: Any) -> str:
    try:
        return str(transport.getPeer())
    except Exception:
        return "?"


class RPCPortFactory(ServerFactory):
    """Builds one ``SniffingProtocol`` per accepted connection of the RPC port."""

    def __init__(
        self,
        registry: HandlerRegistry,
        clock: IReactorTime,
        tls: IServerTLS | None = None,
        handshake_timeout: float = DEFAULT_RPC_HANDSHAKE_TIMEOUT,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.raft_handoff = metrics.counter(
            "rpc.raft_handoff", "Connections handed to the raft layer")
        self.connections: set[SniffingProtocol] = set()

    def buildProtocol(self, addr: Any) -> SniffingProtocol:
        return SniffingProtocol(self)


class _Stage:
    SNIFF = "sniff"
    TLS = "tls"
    HANDLER = "handler"
    CLOSED = "closed"


class SniffingProtocol(Protocol):
    """The socket-level protocol of one RPC-port connection (see module docstring)."""

    def __init__(self, factory: RPCPortFactory) -> None:
        self.port = factory
        self._stage = _Stage.SNIFF
        self._timer: IDelayedCall | None = None
        self._downstream: IProtocol | None = None  # receives the socket's later bytes
        self._close_waiters: list[Deferred[None]] = []
        self._lost = False
        tls = factory.tls
        self._sniffer = sniff.Sniffer(
            mutual_tls_capable=tls is not None and tls.mutual_tls_capable(),
            verify_incoming=tls is not None and tls.verify_incoming_rpc(),
        )

    # -- socket events ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.port.connections.add(self)
        try:  # Go sockets default to TCP_NODELAY; small RPC frames must not wait for ACKs
            self._socket().setTcpNoDelay(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # in-memory transports
        if self.port.handshake_timeout > 0:
            self._timer = self.port.clock.callLater(self.port.handshake_timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._downstream is not None:
            self._downstream.dataReceived(data)
            return
        if self._stage != _Stage.SNIFF:
            return
        decision = self._sniffer.receive_data(data)
        if decision is None:
            return
        self._act(decision)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        self.port.connections.discard(self)
        downstream, self._downstream = self._downstream, None
        if downstream is not None:
            downstream.connectionLost(reason)
        self._stage = _Stage.CLOSED
        self._lost = True
        waiters, self._close_waiters = self._close_waiters, []
        for w in waiters:
            w.callback(None)

    # -- decisions --------------------------------------------------------------------------

    def _act(self, decision: sniff.Decision) -> None:
        if isinstance(decision, sniff.Reject):
            self.reject(decision.message, byte=decision.first_byte)
        elif isinstance(decision, sniff.Legacy):
            self._cancel_timer()
            self.hand_off(
                ConnectionInfo(self._socket(), decision.rpc_type, None, tls=False),
                decision.data, self,
            )
        elif isinstance(decision, sniff.NativeTLS):
            log.debug(MSG_DETECTED_TLS, conn=_peer(self.transport))
            assert self.port.tls is not None
            try:
                creator = self.port.tls.incoming_alpn_creator(RPC_NEXT_PROTOS)
            except Exception as e:  # e.g. certificate files unreadable after a reload
                self.reject(MSG_HANDSHAKE_FAILED, error=str(e))
                return
            self._start_tls(creator, decision.data, native=True, rpc_type=None)
        else:  # LegacyTLS
            tls = self.port.tls
            if tls is None:
                self.reject(MSG_TLS_NOT_CONFIGURED, byte=decision.rpc_type)
                return
            make: Any
            if decision.rpc_type == RPCType.TLS:
                make = tls.incoming_rpc_creator
            else:
                make = getattr(tls, "incoming_insecure_rpc_creator", None)
                if make is None:
                    self.reject(sniff.MSG_UNRECOGNIZED, byte=decision.rpc_type)
                    return
            try:
                creator = make()
            except Exception as e:
                self.reject(MSG_HANDSHAKE_FAILED, error=str(e))
                return
            self._start_tls(creator, decision.data, native=False, rpc_type=decision.rpc_type)

    def _start_tls(
        self, creator: IOpenSSLServerConnectionCreator, data: bytes, *, native: bool,
        rpc_type: int | None,
    ) -> None:
        self._stage = _Stage.TLS
        tls_factory = TLSMemoryBIOFactory(creator, False, Factory(), clock=self.port.clock)
        inner = _TLSSide(self, native=native, rpc_type=rpc_type)
        tls_proto: Any = tls_factory.protocol(tls_factory, inner)
        self._downstream = tls_proto
        tls_proto.makeConnection(self.transport)
        if data and self._downstream is tls_proto:
            tls_proto.dataReceived(data)

    def reject(self, message: str, transport: ITransport | None = None, **fields: Any) -> None:
        """Log ``message`` (the reference's wording) and close the connection.

        ``transport`` is the layer to close (the TLS layer inside TLS; the socket otherwise)."""
        log.error(message, conn=_peer(self.transport), **fields)
        self._stage = _Stage.CLOSED
        self._cancel_timer()
        closing = transport if transport is not None else self.transport
        if closing is not None:
            closing.loseConnection()

    def hand_off(self, info: ConnectionInfo, data: bytes, forwarder: _Forwarding) -> None:
        """Give the connection to the handler for ``info``; ``forwarder`` relays later bytes."""
        registry = self.port.registry
        if info.alpn is not None:
            handler = registry.for_alpn(info.alpn)
            if handler is None:
                self.reject(MSG_UNKNOWN_ALPN, info.transport, protocol=info.alpn, sni=info.sni)
                return
        else:
            assert info.rpc_type is not None
            handler = registry.for_type(info.rpc_type)
            if handler is None:
                self.reject(sniff.MSG_UNRECOGNIZED, info.transport, byte=info.rpc_type)
                return
        if info.rpc_type == RPCType.RAFT or info.alpn == ALPN_RPC_RAFT:
            self.port.raft_handoff.inc()
        self._cancel_timer()
        self._stage = _Stage.HANDLER
        try:
            proto: Any = handler.build_protocol(info)
        except Exception:
            log.failure("RPC handler {handler!r} refused the connection", handler=handler,
                        conn=_peer(self.transport))
            self._stage = _Stage.CLOSED
            info.transport.loseConnection()
            return
        forwarder.target = proto
        proto.makeConnection(info.transport)
        if data:
            proto.dataReceived(data)

    # the plaintext path forwards through this object itself
    @property
    def target(self) -> IProtocol | None:
        return self._downstream

    @target.setter
    def target(self, proto: IProtocol | None) -> None:
        self._downstream = proto

    # -- timeout ----------------------------------------------------------------------------

    def _timed_out(self) -> None:
        self._timer = None
        if self._stage == _Stage.SNIFF:
            log.error(MSG_FIRST_BYTE, conn=_peer(self.transport),
                      error="i/o timeout waiting for the first byte")
        elif self._stage == _Stage.TLS:
            log.error(MSG_HANDSHAKE_FAILED, conn=_peer(self.transport),
                      error="i/o timeout during the TLS handshake")
        self._stage = _Stage.CLOSED
        self._socket().abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _socket(self) -> Any:
        assert self.transport is not None
        return self.transport

    def when_closed(self) -> Deferred[None]:
        """Fires once the socket is closed."""
        d: Deferred[None] = Deferred()
        if self._lost:
            d.callback(None)
        else:
            self._close_waiters.append(d)
        return d


_Forwarding = Any  # an object with a writable ``target`` attribute


@implementer(IHandshakeListener)
class _TLSSide(Protocol):
    """The protocol inside the TLS layer until (and after) a handler takes the connection."""

    def __init__(self, conn: SniffingProtocol, *, native: bool, rpc_type: int | None) -> None:
        self._conn = conn
        self._native = native
        self._rpc_type = rpc_type
        self._handshake_done = False
        self.target: IProtocol | None = None
        self._inner_sniffer: sniff.Sniffer | None = None

    def handshakeCompleted(self) -> None:
        self._handshake_done = True
        transport: Any = self.transport
        conn = self._conn
        if conn._stage != _Stage.TLS:
            return
        sni = _server_name(transport)
        if self._native:
            raw = getattr(transport, "negotiatedProtocol", None)
            alpn = raw.decode("ascii", "replace") if raw else ""
            log.debug(MSG_ACCEPTED_NATIVE, sni=sni, protocol=alpn, conn=_peer(transport))
            conn.hand_off(ConnectionInfo(transport, None, alpn, tls=True, sni=sni), b"", self)
        elif self._rpc_type == RPCType.TLS:
            self._inner_sniffer = sniff.Sniffer(
                mutual_tls_capable=False, verify_incoming=False, inside_tls=True)
        else:
            conn.hand_off(ConnectionInfo(transport, self._rpc_type, None, tls=True, sni=sni),
                          b"", self)

    def dataReceived(self, data: bytes) -> None:
        if self.target is not None:
            self.target.dataReceived(data)
            return
        if self._inner_sniffer is None or self._conn._stage != _Stage.TLS:
            return
        decision = self._inner_sniffer.receive_data(data)
        if decision is None:
            return
        if isinstance(decision, sniff.Legacy):
            transport: Any = self.transport
            info = ConnectionInfo(transport, decision.rpc_type, None, tls=True,
                                  sni=_server_name(self.transport))
            self._conn.hand_off(info, decision.data, self)
        elif isinstance(decision, sniff.Reject):
            self._conn.reject(decision.message, self.transport, byte=decision.first_byte)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._handshake_done and self._conn._stage == _Stage.TLS:
            log.error(MSG_HANDSHAKE_FAILED, conn=_peer(self.transport),
                      error=reason.getErrorMessage())
        target, self.target = self.target, None
        if target is not None:
            target.connectionLost(reason)


def _server_name(transport: Any) -> str | None:
    try:
        name = transport.getHandle().get_servername()
    except Exception:
        return None
    return name.decode("ascii", "replace") if name else None


class RPCPortService(Service):
    """Listens on ``endpoint`` with an ``RPCPortFactory``; stopping closes every connection."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: RPCPortFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._listening = self.endpoint.listen(self.factory)

        def got(port: IListeningPort) -> IListeningPort:
            self.port = port
            return port

        self._listening.addCallback(got)

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port (start the service first)."""
        assert self._listening is not None, "start the service first"
        d: Deferred[IListeningPort] = Deferred()

        def fire(p: IListeningPort) -> IListeningPort:
            d.callback(p)
            return p

        self._listening.addCallback(fire)
        return d

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        waits: list[Deferred[Any]] = []
        if self.port is not None:
            stopped = self.port.stopListening()
            if stopped is not None:
                waits.append(stopped)
            self.port = None
        for conn in list(self.factory.connections):
            waits.append(conn.when_closed())
            if conn.transport is not None:
                conn._socket().abortConnection()
        d = DeferredList(waits)
        d.addCallback(lambda _: None)
        return d  # type: ignore[return-value]
