# -*- test-case-name: tests.unit.rpc.test_rpc_port,tests.security.test_security_rpc_matrix -*-
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
``RPCPortService`` is the draining endpoint service of ``wanfedtx.listening`` with this factory:
it listens on an endpoint and aborts every connection on stop.

Guards (an unauthenticated peer reaches all of them):

* ``max_conns_per_client`` (``limits.rpc_max_conns_per_client``, 0 = unlimited): concurrent
  connections per source IP, every connection counted (raft and WAN-gossip ALPN too); one over
  the limit is closed at once (metric ``rpc.accept_conn`` with ``status``).
* Server identity for raft: when the TLS provider says ``server_identity_required()``
  (``verify_incoming`` + ``verify_server_hostname``), a raft connection (legacy inner type 1 or
  ALPN ``consul/raft``) is handed over only after ``authorize_server_conn(transport)`` accepted
  the peer's certificate (see ``wanfedtx.tls.server_identity``); the node name goes into
  ``ConnectionInfo.peer_node``. Refusals are counted in ``rpc.raft_refused``.
* Every rejection line goes through one ``RateLimitedLog`` per port, with the peer (``from``)
  and a reason per cause (``REASON_*``), keeping the reference's message texts.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.listening import CloseNotifier, DrainingEndpointService
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc import sniff
from wanfedtx.rpc.constants import (
    ALPN_RPC_RAFT,
    DEFAULT_RPC_HANDSHAKE_TIMEOUT,
    DEFAULT_RPC_MAX_CONNS_PER_CLIENT,
    RPC_NEXT_PROTOS,
    RPCType,
)
from wanfedtx.rpc.interfaces import ConnectionInfo, IServerTLS
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.rejections import (
    MSG_ACCEPTED_NATIVE,
    MSG_CONN_LIMIT,
    MSG_DETECTED_TLS,
    MSG_FIRST_BYTE,
    MSG_HANDSHAKE_FAILED,
    MSG_RAFT_ANY_CERT,
    MSG_RAFT_PLAINTEXT,
    MSG_RAFT_REFUSED,
    MSG_TLS_NOT_CONFIGURED,
    MSG_UNKNOWN_ALPN,
    REASON_BAD_BYTE,
    REASON_CONN_LIMIT,
    REASON_FIRST_BYTE_TIMEOUT,
    REASON_RAFT_IDENTITY,
    REASON_TLS_FAILED,
    REASON_TLS_NOT_CONFIGURED,
    REASON_TLS_TIMEOUT,
    REASON_UNKNOWN_ALPN,
    SNIFF_REASONS,
    handshake_reason,
    log_format,
    peer_address,
    peer_host,
)

log = Logger(namespace="wanfedtx.rpc")


class RPCPortFactory(ServerFactory):
    """Builds one ``SniffingProtocol`` per accepted connection of the RPC port."""

    def __init__(
        self,
        registry: HandlerRegistry,
        clock: IReactorTime,
        tls: IServerTLS | None = None,
        handshake_timeout: float = DEFAULT_RPC_HANDSHAKE_TIMEOUT,
        metrics: Registry = REGISTRY,
        max_conns_per_client: int = DEFAULT_RPC_MAX_CONNS_PER_CLIENT,
        rate_log: RateLimitedLog | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.max_conns_per_client = max_conns_per_client
        self.raft_handoff = metrics.counter(
            "rpc.raft_handoff", "Connections handed to the raft layer")
        self.raft_refused = metrics.counter(
            "rpc.raft_refused",
            "Raft connections refused: the peer is not a server of this datacenter")
        self.accept_conn = metrics.counter(
            "rpc.accept_conn", "Connections accepted on the RPC port, by status", ("status",))
        self.per_client: dict[str, int] = {}
        self.rlog = rate_log if rate_log is not None else RateLimitedLog(log, clock)

    def buildProtocol(self, addr: Any) -> SniffingProtocol:
        return SniffingProtocol(self)

    def server_identity_required(self) -> bool:
        """Raft needs a verified server identity (``verify_incoming`` and
        ``verify_server_hostname``); a TLS provider without the check never requires it."""
        check = getattr(self.tls, "server_identity_required", None)
        return bool(check()) if callable(check) else False

    def raft_security_warnings(self) -> list[str]:
        """The start-up warnings about raft's authentication on this port (possibly none)."""
        tls = self.tls
        if tls is None or not tls.verify_incoming_rpc():
            return [MSG_RAFT_PLAINTEXT]
        if not self.server_identity_required():
            return [MSG_RAFT_ANY_CERT]
        return []

    def admit(self, host: str | None) -> bool:
        """Count a new connection from ``host``; False when it is over the per-client limit."""
        if host is None:
            return True
        n = self.per_client.get(host, 0)
        if self.max_conns_per_client > 0 and n >= self.max_conns_per_client:
            return False
        self.per_client[host] = n + 1
        return True

    def release(self, host: str) -> None:
        n = self.per_client.get(host, 0) - 1
        if n > 0:
            self.per_client[host] = n
        else:
            self.per_client.pop(host, None)


class _Stage:
    SNIFF = "sniff"
    TLS = "tls"
    HANDLER = "handler"
    CLOSED = "closed"


@implementer(IHalfCloseableProtocol)
class SniffingProtocol(Protocol):
    """The socket-level protocol of one RPC-port connection (see module docstring).

    A client's half-close reaches a plaintext handler that supports it (the snapshot stream's
    request ends with one); for every other stage and handler it closes the connection."""

    def __init__(self, factory: RPCPortFactory) -> None:
        self.port = factory
        self._stage = _Stage.SNIFF
        self._timer: IDelayedCall | None = None
        self._downstream: IProtocol | None = None  # receives the socket's later bytes
        self._closed = CloseNotifier()
        self._counted_host: str | None = None
        tls = factory.tls
        self._sniffer = sniff.Sniffer(
            mutual_tls_capable=tls is not None and tls.mutual_tls_capable(),
            verify_incoming=tls is not None and tls.verify_incoming_rpc(),
        )

    # -- socket events ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        host = peer_host(self.transport)
        if not self.port.admit(host):
            self.port.accept_conn.inc(status="rejected")
            self.port.rlog.error(REASON_CONN_LIMIT, MSG_CONN_LIMIT + ": from={peer}",
                                 peer=peer_address(self.transport),
                                 limit=self.port.max_conns_per_client)
            self._stage = _Stage.CLOSED
            self._socket().loseConnection()
            return
        self._counted_host = host
        self.port.accept_conn.inc(status="accepted")
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

    def readConnectionLost(self) -> None:
        half = IHalfCloseableProtocol(self._downstream, None)
        if half is not None:
            half.readConnectionLost()
        elif self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        half = IHalfCloseableProtocol(self._downstream, None)
        if half is not None:
            half.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        if self._counted_host is not None:
            self.port.release(self._counted_host)
            self._counted_host = None
        downstream, self._downstream = self._downstream, None
        if downstream is not None:
            downstream.connectionLost(reason)
        self._stage = _Stage.CLOSED
        self._closed.fire()

    # -- decisions --------------------------------------------------------------------------

    def _act(self, decision: sniff.Decision) -> None:
        if isinstance(decision, sniff.Reject):
            self.reject(decision.message, SNIFF_REASONS.get(decision.message, REASON_BAD_BYTE),
                        byte=decision.first_byte)
        elif isinstance(decision, sniff.Legacy):
            self._cancel_timer()
            self.hand_off(
                ConnectionInfo(self._socket(), decision.rpc_type, None, tls=False),
                decision.data, self,
            )
        elif isinstance(decision, sniff.NativeTLS):
            log.debug(MSG_DETECTED_TLS, conn=peer_address(self.transport))
            if self.port.tls is None:  # the sniffer decides NativeTLS only with TLS material
                self.reject(MSG_TLS_NOT_CONFIGURED, REASON_TLS_NOT_CONFIGURED)
                return
            try:
                creator = self.port.tls.incoming_alpn_creator(RPC_NEXT_PROTOS)
            except Exception as e:  # e.g. certificate files unreadable after a reload
                self.reject(MSG_HANDSHAKE_FAILED, REASON_TLS_FAILED, error=str(e))
                return
            self._start_tls(creator, decision.data, native=True, rpc_type=None)
        else:  # LegacyTLS
            tls = self.port.tls
            if tls is None:
                self.reject(MSG_TLS_NOT_CONFIGURED, REASON_TLS_NOT_CONFIGURED,
                            byte=decision.rpc_type)
                return
            make: Any
            if decision.rpc_type == RPCType.TLS:
                make = tls.incoming_rpc_creator
            else:
                make = getattr(tls, "incoming_insecure_rpc_creator", None)
                if make is None:
                    self.reject(sniff.MSG_UNRECOGNIZED, REASON_BAD_BYTE, byte=decision.rpc_type)
                    return
            try:
                creator = make()
            except Exception as e:
                self.reject(MSG_HANDSHAKE_FAILED, REASON_TLS_FAILED, error=str(e))
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

    def reject(self, message: str, reason: str, transport: ITransport | None = None,
               level: LogLevel = LogLevel.error, **fields: Any) -> None:
        """Log ``message`` (the reference's wording) with the peer and ``reason`` through the
        port's rate-limited log, and close the connection.

        ``transport`` is the layer to close (the TLS layer inside TLS; the socket otherwise)."""
        line = log_format(message, fields)  # (removes the ``raw`` flag from ``fields``)
        self.port.rlog.emit(level, reason, line, peer=peer_address(self.transport), **fields)
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
                self.reject(MSG_UNKNOWN_ALPN, REASON_UNKNOWN_ALPN, info.transport,
                            protocol=info.alpn, sni=info.sni)
                return
        else:
            handler = registry.for_type(info.rpc_type) if info.rpc_type is not None else None
            if handler is None:
                self.reject(sniff.MSG_UNRECOGNIZED, REASON_BAD_BYTE, info.transport,
                            byte=info.rpc_type)
                return
        if info.rpc_type == RPCType.RAFT or info.alpn == ALPN_RPC_RAFT:
            checked = self._authorize_raft(info)
            if checked is None:
                return
            info = checked
            self.port.raft_handoff.inc()
        self._cancel_timer()
        self._stage = _Stage.HANDLER
        try:
            proto: Any = handler.build_protocol(info)
        except Exception:
            log.failure("RPC handler {handler!r} refused the connection", handler=handler,
                        conn=peer_address(self.transport))
            self._stage = _Stage.CLOSED
            info.transport.loseConnection()
            return
        forwarder.target = proto
        proto.makeConnection(info.transport)
        if data:
            proto.dataReceived(data)

    def _authorize_raft(self, info: ConnectionInfo) -> ConnectionInfo | None:
        """``info`` with ``peer_node`` when raft may be served, None when refused (closed)."""
        if not self.port.server_identity_required():
            return info
        tls: Any = self.port.tls
        if not info.tls:  # the sniffer's verify_incoming gate closes these first
            error = "raft requires TLS with a server certificate of this datacenter"
        else:
            try:
                identity = tls.authorize_server_conn(info.transport)
            except Exception as e:  # never let a certificate quirk skip the refusal
                error = f"server certificate check failed: {e!r}"
            else:
                if identity.node is not None:
                    return attrs.evolve(info, peer_node=identity.node)
                error = str(identity.reason)
        self.port.raft_refused.inc()
        self.reject(MSG_RAFT_REFUSED + ': from={peer} operation="raft RPC" error={error}',
                    REASON_RAFT_IDENTITY, info.transport, level=LogLevel.warn, error=error,
                    raw=True)
        return None

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
        peer = peer_address(self.transport)
        if self._stage == _Stage.SNIFF:
            error = "i/o timeout waiting for the first byte"
            self.port.rlog.error(REASON_FIRST_BYTE_TIMEOUT,
                                 log_format(MSG_FIRST_BYTE, {"error": error}),
                                 peer=peer, error=error)
        elif self._stage == _Stage.TLS:
            error = "i/o timeout during the TLS handshake"
            self.port.rlog.error(REASON_TLS_TIMEOUT,
                                 log_format(MSG_HANDSHAKE_FAILED, {"error": error}),
                                 peer=peer, error=error)
        self._stage = _Stage.CLOSED
        self._socket().abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _socket(self) -> Any:
        if self.transport is None:
            raise RuntimeError("RPC-port connection used before connectionMade")
        return self.transport

    def when_closed(self) -> Deferred[None]:
        """Fires once the socket is closed."""
        return self._closed.when_closed()


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
            log.debug(MSG_ACCEPTED_NATIVE, sni=sni, protocol=alpn, conn=peer_address(transport))
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
            self._conn.reject(decision.message,
                              SNIFF_REASONS.get(decision.message, REASON_BAD_BYTE),
                              self.transport, byte=decision.first_byte)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._handshake_done and self._conn._stage == _Stage.TLS:
            error = reason.getErrorMessage()
            self._conn.port.rlog.error(handshake_reason(reason),
                                       log_format(MSG_HANDSHAKE_FAILED, {"error": error}),
                                       peer=peer_address(self._conn.transport), error=error)
        target, self.target = self.target, None
        if target is not None:
            target.connectionLost(reason)


def _server_name(transport: Any) -> str | None:
    try:
        name = transport.getHandle().get_servername()
    except Exception:
        return None
    return name.decode("ascii", "replace") if name else None


class RPCPortService(DrainingEndpointService):
    """Listens on ``endpoint`` with an ``RPCPortFactory``; stopping aborts every connection
    and fires once every socket is closed (``wanfedtx.listening``)."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: RPCPortFactory) -> None:
        super().__init__(endpoint, factory, abort=True)
        self.rpc_factory = factory

    @property
    def port(self) -> IListeningPort | None:
        return self.ports[0] if self.ports else None

    def startService(self) -> None:
        if self.rpc_factory.registry.for_type(RPCType.RAFT) is not None:
            for warning in self.rpc_factory.raft_security_warnings():
                log.warn(warning)
        super().startService()

    def stopService(self) -> Deferred[None]:
        self.rpc_factory.rlog.stop()
        return super().stopService()
