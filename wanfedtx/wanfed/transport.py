# -*- test-case-name: tests.unit.wanfed.test_wanfed_transport -*-
"""``WanfedTransport``: the WAN pool's transport when WAN federation goes through mesh gateways.

It wraps the plain UDP/TCP transport. Every address must carry a WAN node name
``<node>.<dc>`` (``split_node_name``); names of this datacenter use the wrapped transport as is.
For another datacenter the gateway comes from the ``IGatewayResolver`` (no gateway:
``Remote DC has no server currently reachable``) and:

* packets are framed (4-byte big-endian length + bytes) on a pooled TLS connection keyed by the
  full node name, ALPN ``consul/wan-gossip/packet``, one-way (nothing is read back);
* streams (push/pull, user messages) open a fresh TLS connection, ALPN
  ``consul/wan-gossip/stream``, driven like a TCP stream; memberlist's timeout is ignored for the
  dial, which has its own 10 s.

Both use SNI ``<node>.server.<dc>.<domain>`` (``server.<dc>.<domain>`` for the node ``*``) and
mutual TLS; the TCP dial sets TCP_NODELAY and keepalive (``wanfedtx.rpc.dial.Dialer.dial_alpn``).
Received packets and streams come back through ``ingest_packet`` / ``ingest_stream`` (see
``wanfedtx.wanfed.ingest``), which go to the wrapped transport's handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.gossip.interfaces import (
    Address,
    IGossipTransport,
    IStreamSink,
    IStreamWriter,
    PacketHandler,
)
from wanfedtx.gossip.pools import split_node_name
from wanfedtx.listening import CloseNotifier
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.errors import RPCLayerError
from wanfedtx.rpc.interfaces import IClientTLS, IGatewayResolver

from .constants import (
    ALPN_WAN_GOSSIP_PACKET,
    ALPN_WAN_GOSSIP_STREAM,
    DIAL_TIMEOUT,
    GOSSIP_PACKET_MAX_IDLE_TIME,
)
from .errors import ConfigurationError, DCNotAvailable, OutgoingTLSDisabled, WanfedError
from .framing import encode_frame
from .pool import PacketConnPool, PooledConn, observe

log = Logger(namespace="wanfedtx.wanfed")

MSG_SEND_FAILED = "memberlist: Failed to send packet to {addr}: {error}"


class _Closable(Protocol):
    """Tracks when the connection is gone."""

    def __init__(self) -> None:
        self._closed = CloseNotifier()

    @property
    def _gone(self) -> bool:
        return self._closed.closed

    def when_closed(self) -> Deferred[None]:
        return self._closed.when_closed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed.fire()


class PacketConn(_Closable):
    """Client side of one ``consul/wan-gossip/packet`` connection (one-way: writes frames)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.last_used = 0.0
        self.failed = False
        self.frames_sent = 0

    def usable(self) -> bool:
        t: Any = self.transport
        return not self._gone and t is not None and not getattr(t, "disconnecting", False)

    def send(self, frame: bytes) -> None:
        if not self.usable():
            self.failed = True
            raise WanfedError(f"wanfed: the packet connection to {self.key} is closed")
        transport = self.transport
        if transport is None:  # usable() checked it; narrowed for mypy
            raise WanfedError(f"wanfed: the packet connection to {self.key} is closed")
        try:
            transport.write(frame)
        except Exception as e:
            self.failed = True
            raise WanfedError(f"wanfed: writing to the packet connection failed: {e}") from e
        self.frames_sent += 1

    def dataReceived(self, data: bytes) -> None:
        """Packet connections are one-way; anything the peer sends is ignored."""

    def close(self) -> None:
        if self.transport is not None and not self._gone:
            self.transport.loseConnection()

    def abort(self) -> None:
        t: Any = self.transport
        if t is not None and not self._gone:
            t.abortConnection()


@implementer(IStreamWriter)
class StreamConn(_Closable):
    """Client side of one ``consul/wan-gossip/stream`` connection, driving a memberlist sink."""

    def __init__(self, sink: IStreamSink, owner: WanfedTransport) -> None:
        super().__init__()
        self.sink: IStreamSink | None = sink
        self.owner = owner

    def connectionMade(self) -> None:
        if self.sink is not None:
            self.sink.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.owner._streams.discard(self)
        self._end(None)

    def dial_failed(self, reason: str) -> None:
        self.owner._streams.discard(self)
        self._end(reason)

    def _end(self, reason: str | None) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.connection_lost(reason)

    # IStreamWriter
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


@implementer(IGossipTransport)
class WanfedTransport:
    """Routes WAN gossip of other datacenters through mesh gateways (module docstring)."""

    def __init__(
        self,
        inner: IGossipTransport,
        datacenter: str,
        tls: IClientTLS | None,
        resolver: IGatewayResolver | None,
        reactor: ReactorLike,
        *,
        dial_timeout: float = DIAL_TIMEOUT,
        max_idle: float = GOSSIP_PACKET_MAX_IDLE_TIME,
    ) -> None:
        if tls is None:
            raise ConfigurationError("wanfed: tlsConfigurator is nil")
        if resolver is None:
            raise ConfigurationError("wanfed: gwResolver is nil")
        self.inner = inner
        self.datacenter = datacenter
        self.tls = tls
        self.resolver = resolver
        self.reactor = reactor
        self.clock = reactor
        self.dialer = Dialer(reactor, datacenter, server=True, tls=tls, timeout=dial_timeout)
        self.pool = PacketConnPool(reactor, max_idle=max_idle)
        self._streams: set[StreamConn] = set()
        self._stream_dials: set[Deferred[Any]] = set()
        self._closing = False

    # -- routing

    def _route(self, address: Address) -> tuple[str, str, str] | None:
        """(node, dc, gateway) for another datacenter; None for this one."""
        node, dc = split_node_name(address.name)
        if dc == self.datacenter:
            return None
        gw = self.resolver.pick_gateway(dc)
        if not gw:
            raise DCNotAvailable()
        return node, dc, gw

    def _dial(self, dc: str, node: str, alpn: str, gw: str, app: IProtocol) -> Deferred[Any]:
        if not self.tls.mutual_tls_capable():
            raise OutgoingTLSDisabled()
        try:
            return self.dialer.dial_alpn(gw, dc, node, alpn, app)
        except (ValueError, RPCLayerError) as e:  # the TLS configurator's input checks
            raise WanfedError(str(e)) from e

    # -- IGossipTransport

    def set_handlers(
        self, packet_handler: PacketHandler, stream_handler: Callable[[], IStreamSink]
    ) -> None:
        self.inner.set_handlers(packet_handler, stream_handler)

    def final_advertise_addr(self, ip: str, port: int) -> tuple[str, int]:
        return self.inner.final_advertise_addr(ip, port)

    def write_to_address(self, packet: bytes, address: Address) -> float:
        route = self._route(address)
        if route is None:
            return self.inner.write_to_address(packet, address)
        node, dc, gw = route
        frame = encode_frame(packet)
        key = address.name
        conn = self.pool.acquire(key)
        if conn is not None:
            self._send(conn, frame)
            return float(self.clock.seconds())
        if not self.tls.mutual_tls_capable():
            raise OutgoingTLSDisabled()

        def dial() -> Deferred[PooledConn]:
            return self._dial(dc, node, ALPN_WAN_GOSSIP_PACKET, gw, PacketConn(key))

        def ready(got: PooledConn | None, error: str | None) -> None:
            if got is None:
                log.warn(MSG_SEND_FAILED, addr=str(address), error=error, gateway=gw)
                return
            try:
                self._send(got, frame)
            except WanfedError as e:
                log.warn(MSG_SEND_FAILED, addr=str(address), error=str(e), gateway=gw)

        self.pool.dial_once(key, dial, ready)
        return float(self.clock.seconds())

    def _send(self, conn: PooledConn, frame: bytes) -> None:
        if not isinstance(conn, PacketConn):
            raise WanfedError(f"wanfed: pool returned a {type(conn).__name__}, not a PacketConn")
        try:
            conn.send(frame)
        finally:
            self.pool.return_or_close(conn)

    def dial_address(self, address: Address, sink: IStreamSink, timeout: float) -> None:
        route = self._route(address)
        if route is None:
            self.inner.dial_address(address, sink, timeout)
            return
        node, dc, gw = route
        conn = StreamConn(sink, self)
        d = self._dial(dc, node, ALPN_WAN_GOSSIP_STREAM, gw, conn)
        self._streams.add(conn)
        self._stream_dials.add(d)

        def done(_: object) -> None:
            self._stream_dials.discard(d)
            if self._closing:
                t: Any = conn.transport
                if t is not None:
                    t.abortConnection()

        def failed(f: Failure) -> None:
            self._stream_dials.discard(d)
            conn.dial_failed(f"dial via mesh gateway {gw} failed: {f.getErrorMessage()}")

        d.addCallbacks(done, failed)

    def ingest_packet(self, packet: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        self.inner.ingest_packet(packet, from_addr, timestamp)

    def ingest_stream(self) -> IProtocol:
        return self.inner.ingest_stream()

    def shutdown(self) -> Deferred[None]:
        """Close the packet pool, then the wrapped transport (its error wins)."""
        self._closing = True
        for s in list(self._streams):
            t: Any = s.transport
            if t is not None:
                t.abortConnection()
        waits: list[Deferred[Any]] = [self.pool.close()]
        waits += [s.when_closed() for s in self._streams if s.transport is not None]
        waits += [observe(d) for d in self._stream_dials]
        pending = defer.DeferredList(waits, consumeErrors=True)

        async def stop() -> None:
            await pending
            await self.inner.shutdown()

        return Deferred.fromCoroutine(stop())
