"""The SNI relay: Twisted protocols that read the ClientHello, route it and relay TCP both ways.

Per downstream connection: read the first flight with the sans-IO
:class:`~wanfedtx.gateway.clienthello.ClientHelloReader` under a read deadline, match the SNI in the
route table of the snapshot current at that moment, connect to a weighted-random healthy endpoint
(failing over to the others on connect failure or timeout), replay the buffered bytes and relay.

Two data paths exist once both sides are up:

* ``twisted``: the two TCP transports are each other's streaming producers (backpressure both
  ways) and the protocols are ``IHalfCloseableProtocol`` so a FIN on one side becomes a write
  shutdown on the other;
* ``splice``: both sockets are handed to :class:`~wanfedtx.gateway.splice.SpliceRelay`, a
  dedicated thread that moves bytes with ``splice(2)`` through pipes (Linux only).

The route table is swapped atomically with :meth:`RelayFactory.set_route_table`; established
connections keep the endpoint they were given.
"""

from __future__ import annotations

import random
import socket
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import error
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.gateway import peerlog
from wanfedtx.gateway.clienthello import (
    DEFAULT_MAX_HELLO_SIZE,
    ClientHello,
    ClientHelloReader,
    Rejected,
)
from wanfedtx.gateway.errors import need
from wanfedtx.gateway.router import Route, RouteTable, pick_endpoint
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.stats import ClusterStats, GatewayStats, ListenerStats, TcpStats

if TYPE_CHECKING:
    from wanfedtx.gateway.splice import SpliceRelay

log = Logger(namespace="wanfed.gateway")

DATA_PATHS = ("loop", "splice", "twisted")
# placeholders until a connection is routed (never rendered)
_UNROUTED_TCP = TcpStats()
_UNROUTED_CLUSTER = ClusterStats()


@attrs.frozen
class RelaySettings:
    hello_timeout: float = 5.0
    """Seconds a new connection has to deliver its whole ClientHello."""
    idle_timeout: float | None = 3600.0
    """Close a relayed connection after this many seconds without bytes (Envoy's default 1 h)."""
    max_connections: int | None = 10000
    """Downstream connections open at once (handshaking or relaying); more are closed."""
    max_hello_size: int = DEFAULT_MAX_HELLO_SIZE
    max_connect_attempts: int | None = None
    """Endpoints tried per connection on connect failure; None tries every healthy endpoint."""
    read_size: int = 256 * 1024
    """Bytes per read on the twisted data path (Twisted's default is 64 KiB)."""
    data_path: str = "twisted"
    pipe_size: int = 1 << 20
    workers: int = 1
    """Relay loops on the loop path, sharing the port with SO_REUSEPORT."""
    """Pipe capacity per direction on the splice and loop paths (the kernel caps it at
    /proc/sys/fs/pipe-max-size)."""


class RelayFactory(Factory):
    """The listening side: one per listener; holds the current route table and the stats."""

    def __init__(
        self,
        reactor: Any,
        table: RouteTable,
        stats: GatewayStats,
        listener_stats: ListenerStats,
        settings: RelaySettings = RelaySettings(),
        rng: random.Random | None = None,
        splice: SpliceRelay | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.tcp: IReactorTCP = reactor
        self.table = table
        self.stats = stats
        self.listener_stats = listener_stats
        self.settings = settings
        self.rng = rng if rng is not None else random.Random()
        self.splice = splice
        self.active: set[DownstreamProtocol] = set()
        self.peer_log = peerlog.peer_log(reactor)

    def set_route_table(self, table: RouteTable) -> None:
        """Swap routing atomically: new connections use ``table``, open ones are untouched."""
        self.table = table

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        limit = self.settings.max_connections
        if limit is not None and len(self.active) >= limit:
            self.listener_stats.downstream_cx_overflow += 1
            self.peer_log.warn(
                peerlog.CONNECTION_LIMIT,
                peerlog.MSG_CONNECTION_LIMIT,
                peer=peerlog.host_port(addr),
                limit=limit,
            )
            return None
        p = DownstreamProtocol(self)
        p.factory = self
        return p

    def close_all(self) -> None:
        for p in list(self.active):
            p.abort("gateway stopping")
        self.peer_log.stop()


@implementer(IHalfCloseableProtocol)
class DownstreamProtocol(Protocol):
    """One downstream connection through its states: hello, connecting, relaying, closed."""

    transport: Any

    def __init__(self, factory: RelayFactory) -> None:
        self.f = factory
        self.reader: ClientHelloReader | None = ClientHelloReader(factory.settings.max_hello_size)
        self.state = "hello"
        self.hello_timer: IDelayedCall | None = None
        self.idle_timer: IDelayedCall | None = None
        self.upstream: UpstreamProtocol | None = None
        self.route: Route | None = None
        self.table: RouteTable | None = None
        self.tried: list[Endpoint] = []
        self.pending = bytearray()
        self.tcp_stats: TcpStats = _UNROUTED_TCP
        self.cluster_stats: ClusterStats = _UNROUTED_CLUSTER
        self.down_eof = False
        self.up_eof = False
        self.moved = False  # bytes moved since the idle timer last fired
        self.sni: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        ls = self.f.listener_stats
        ls.downstream_cx_total += 1
        ls.downstream_cx_active += 1
        self.f.active.add(self)
        _nodelay(self.transport)
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = self.f.settings.read_size
        self.hello_timer = self.f.clock.callLater(self.f.settings.hello_timeout, self._hello_late)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.state == "handed-off":
            return  # the socket lives on in the splice relay
        self._finish()
        up = self.upstream
        if up is not None and up.transport is not None and not up.closed:
            if _is_done(reason):
                up.transport.loseConnection()
            else:
                up.transport.abortConnection()

    def _finish(self) -> None:
        if self.state == "closed":
            return
        was_relaying = self.state == "relaying"
        self.state = "closed"
        self.f.active.discard(self)
        self.f.listener_stats.downstream_cx_active -= 1
        for t in (self.hello_timer, self.idle_timer):
            if t is not None and t.active():
                t.cancel()
        if was_relaying and self.cluster_stats is not None:
            self.cluster_stats.upstream_cx_active -= 1

    def abort(self, why: str) -> None:
        log.debug("gateway closing downstream {peer}: {why}", peer=self._peer(), why=why)
        if self.transport is not None:
            self.transport.abortConnection()

    def _peer(self) -> str:
        try:
            return peerlog.host_port(self.transport.getPeer())
        except Exception:
            return "?"

    # -- the hello -------------------------------------------------------------------------

    def _hello_late(self) -> None:
        self.hello_timer = None
        if self.state == "hello":
            self.f.listener_stats.downstream_pre_cx_timeout += 1
            self.f.peer_log.info(
                peerlog.HELLO_TIMEOUT,
                peerlog.MSG_HELLO_TIMEOUT,
                peer=self._peer(),
                timeout=self.f.settings.hello_timeout,
            )
            self.abort("hello timeout")

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state == "relaying":
            self.moved = True
            need(self.upstream, "upstream").transport.write(data)
            n = len(data)
            self.tcp_stats.downstream_cx_rx_bytes_total += n
            self.cluster_stats.upstream_cx_tx_bytes_total += n
            return
        if state == "hello":
            outcome = need(self.reader, "hello reader").receive_data(data)
            if outcome is None:
                return
            if isinstance(outcome, Rejected):
                self._rejected(outcome)
                return
            self._hello(outcome)
            return
        if state == "connecting":
            self.pending += data

    def _rejected(self, r: Rejected) -> None:
        self.f.stats.inspector.count_rejected(r.reason)
        self.f.peer_log.info(
            peerlog.BAD_HELLO,
            peerlog.MSG_BAD_HELLO,
            peer=self._peer(),
            cause=f"{r.reason}: {r.detail}",
        )
        self.abort(r.reason)

    def _hello(self, hello: ClientHello) -> None:
        if self.hello_timer is not None and self.hello_timer.active():
            self.hello_timer.cancel()
        self.hello_timer = None
        self.f.stats.inspector.count_hello(hello)
        self.sni = hello.server_name
        table = self.f.table  # the snapshot current now is the one this connection uses
        fc = table.match_chain(hello.server_name)
        if fc is None:
            self.f.listener_stats.no_filter_chain_match += 1
            self.f.peer_log.info(
                peerlog.UNKNOWN_SNI,
                peerlog.MSG_UNKNOWN_SNI,
                peer=self._peer(),
                sni=hello.server_name,
            )
            self.abort("no filter chain")
            return
        self.tcp_stats = self.f.stats.tcp_prefix(fc.stat_prefix)
        self.tcp_stats.downstream_cx_total += 1
        route = table.route(hello.server_name)
        if route is None or route.endpoints is None:
            self.tcp_stats.downstream_cx_no_route += 1
            self.f.peer_log.info(
                peerlog.NO_ROUTE,
                peerlog.MSG_NO_ROUTE,
                peer=self._peer(),
                sni=hello.server_name,
            )
            self.abort("no route")
            return
        self.route = route
        self.table = table
        self.cluster_stats = self.f.stats.cluster(route.cluster)
        self.pending += need(self.reader, "hello reader").buffered
        self.reader = None
        self.state = "connecting"
        self.transport.pauseProducing()
        self._connect_next()

    # -- connecting ------------------------------------------------------------------------

    def _connect_next(self) -> None:
        route = need(self.route, "route")
        endpoints = need(route.endpoints, "route endpoints")
        cs = self.cluster_stats
        limit = self.f.settings.max_connect_attempts
        ep = None
        if limit is None or len(self.tried) < limit:
            ep = pick_endpoint(endpoints, self.f.rng, self.tried)
        if ep is None:
            if not self.tried:
                cs.upstream_cx_none_healthy += 1
            self.f.peer_log.warn(
                peerlog.NO_ENDPOINT,
                peerlog.MSG_NO_ENDPOINT,
                peer=self._peer(),
                cluster=route.cluster,
                tried=len(self.tried),
            )
            self.abort("no endpoint")
            return
        self.tried.append(ep)
        cs.upstream_cx_total += 1
        timeout = _cluster_timeout(need(self.table, "route table"), route.cluster)
        self.f.tcp.connectTCP(ep.address, ep.port, _UpstreamFactory(self, ep), timeout=timeout)

    def upstream_failed(self, ep: Endpoint, reason: Failure) -> None:
        cs = self.cluster_stats
        cs.upstream_cx_connect_fail += 1
        if _is_timeout(reason):
            cs.upstream_cx_connect_timeout += 1
        self.f.peer_log.warn(
            peerlog.UPSTREAM_CONNECT,
            peerlog.MSG_UPSTREAM_CONNECT,
            peer=self._peer(),
            address=ep.address,
            port=ep.port,
            cluster=self.route.cluster if self.route else "",
            why=reason.getErrorMessage(),
        )
        if self.state == "connecting":
            self._connect_next()

    def upstream_connected(self, up: UpstreamProtocol) -> None:
        if self.state != "connecting":
            up.transport.abortConnection()
            return
        self.upstream = up
        self.cluster_stats.upstream_cx_active += 1
        first = bytes(self.pending)
        self.pending = bytearray()
        self.tcp_stats.downstream_cx_rx_bytes_total += len(first)
        self.cluster_stats.upstream_cx_tx_bytes_total += len(first)
        _nodelay(up.transport)
        splice = self.f.splice
        if splice is not None and _handoff_ok(self.transport) and _handoff_ok(up.transport):
            self._hand_off(splice, up, first)
            return
        self.state = "relaying"
        ut = need(up.transport, "upstream transport")
        dt = need(self.transport, "downstream transport")
        if hasattr(ut, "bufferSize"):
            ut.bufferSize = self.f.settings.read_size
        ut.write(first)
        # each transport pauses the other's reading when its write buffer is full
        ut.registerProducer(dt, True)
        dt.registerProducer(ut, True)
        dt.resumeProducing()
        idle = self.f.settings.idle_timeout
        if idle is not None:
            self.idle_timer = self.f.clock.callLater(idle, self._idle_check)

    def _hand_off(self, splice: SpliceRelay, up: UpstreamProtocol, first: bytes) -> None:
        dt = need(self.transport, "downstream transport")
        ut = need(up.transport, "upstream transport")
        self.state = "handed-off"
        up.closed = True
        # take the descriptors out of Twisted without a shutdown(2): detach the sockets, then
        # let each transport run its normal connectionLost (closing a detached socket is a no-op)
        for t in (dt, ut):
            t.stopReading()
            t.stopWriting()
        down_fd = dt.socket.detach()
        up_fd = ut.socket.detach()
        for t in (dt, ut):
            t.connectionLost(Failure(error.ConnectionDone("handed to the splice relay")))  # type: ignore[no-untyped-call]
        self.f.active.discard(self)
        splice.add(down_fd, up_fd, first, self, self.tcp_stats, self.cluster_stats)

    def splice_closed(self, idle: bool) -> None:
        """Called in the reactor thread when the splice relay closed this pair."""
        self.f.listener_stats.downstream_cx_active -= 1
        if self.cluster_stats is not None:
            self.cluster_stats.upstream_cx_active -= 1
        if idle and self.tcp_stats is not None:
            self.tcp_stats.idle_timeout += 1

    # -- relaying --------------------------------------------------------------------------

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.state != "relaying":
            return
        if self.moved or (self.upstream is not None and self.upstream.moved):
            self.moved = False
            if self.upstream is not None:
                self.upstream.moved = False
            idle = need(self.f.settings.idle_timeout, "idle timeout")
            self.idle_timer = self.f.clock.callLater(idle, self._idle_check)
            return
        self.tcp_stats.idle_timeout += 1
        log.debug(peerlog.MSG_IDLE, peer=self._peer(), sni=self.sni)
        self.transport.loseConnection()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """Downstream sent FIN: forward it as a write shutdown upstream."""
        self.down_eof = True
        up = self.upstream
        if self.state != "relaying" or up is None or up.transport is None:
            self.transport.loseConnection()
            return
        if self.up_eof:
            self.transport.loseConnection()
            up.transport.loseConnection()
        else:
            up.transport.loseWriteConnection()

    def writeConnectionLost(self) -> None:
        pass

    def upstream_eof(self) -> None:
        self.up_eof = True
        dt = need(self.transport, "downstream transport")
        up = need(self.upstream, "upstream")
        if self.down_eof:
            dt.loseConnection()
            up.transport.loseConnection()
        else:
            dt.loseWriteConnection()

    def upstream_lost(self, reason: Failure) -> None:
        if self.cluster_stats is not None:
            if _is_done(reason):
                self.cluster_stats.upstream_cx_destroy_remote += 1
            else:
                self.cluster_stats.upstream_cx_destroy_local += 1
        if self.state == "closed":
            return
        dt = self.transport
        if dt is not None:
            if _is_done(reason):
                dt.loseConnection()
            else:
                dt.abortConnection()


def _is_done(reason: Failure) -> bool:
    return bool(reason.check(error.ConnectionDone))  # type: ignore[no-untyped-call]


def _is_timeout(reason: Failure) -> bool:
    return bool(reason.check(error.TimeoutError))  # type: ignore[no-untyped-call]


def _cluster_timeout(table: RouteTable, cluster: str) -> float:
    for c in table.snapshot.clusters:
        if c.name == cluster:
            return c.connect_timeout_ms / 1000.0
    return 5.0


def _nodelay(t: Any) -> None:
    if ITCPTransport.providedBy(t):
        try:
            t.setTcpNoDelay(True)
        except OSError:
            pass


def _handoff_ok(t: Any) -> bool:
    return (
        t is not None
        and isinstance(getattr(t, "socket", None), socket.socket)
        and hasattr(t, "stopReading")
        and not getattr(t, "dataBuffer", b"")
        and not getattr(t, "_tempDataBuffer", [])
    )


@implementer(IHalfCloseableProtocol)
class UpstreamProtocol(Protocol):
    transport: Any

    def __init__(self, down: DownstreamProtocol) -> None:
        self.down = down
        self.closed = False
        self.moved = False

    def connectionMade(self) -> None:
        self.down.upstream_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.moved = True
        d = self.down
        d.transport.write(data)
        n = len(data)
        d.tcp_stats.downstream_cx_tx_bytes_total += n
        d.cluster_stats.upstream_cx_rx_bytes_total += n

    def readConnectionLost(self) -> None:
        self.down.upstream_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.closed:
            return
        self.closed = True
        self.down.upstream_lost(reason)


class _UpstreamFactory(ClientFactory):
    def __init__(self, down: DownstreamProtocol, ep: Endpoint) -> None:
        self.down = down
        self.ep = ep

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        p = UpstreamProtocol(self.down)
        p.factory = self
        return p

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.down.upstream_failed(self.ep, reason)
