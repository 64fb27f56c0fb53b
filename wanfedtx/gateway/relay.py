# -*- test-case-name: tests.unit.gateway.test_gateway_relay_unit,tests.integration.gateway -*-
"""The ``twisted`` data path: Twisted protocols driving the sans-IO connection core.

Per downstream connection a :class:`DownstreamProtocol` feeds a
:class:`~wanfedtx.gateway.conn.Connection` (hello, routing, fail-over, counters) with what its
transports report and carries out the effects it returns: ``connectTCP`` to the chosen endpoint
under the cluster's connect timeout, the hello deadline and the idle timer on the reactor's
clock, writes, half-closes and closes. Once both sides are up, the two TCP transports are each
other's streaming producers (backpressure both ways) and the protocols are
``IHalfCloseableProtocol`` so a FIN on one side becomes a write shutdown on the other.

The route table is swapped atomically with :meth:`RelayFactory.set_route_table`; established
connections keep the endpoint they were given.
"""

from __future__ import annotations

import random
from typing import Any

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
from wanfedtx.gateway.conn import (
    DATA_PATHS,
    Abort,
    AbortUp,
    Close,
    Connect,
    Connection,
    DownBytes,
    DownEof,
    DownLost,
    Effect,
    HelloTimeout,
    Idle,
    Log,
    PauseDown,
    Relay,
    RelaySettings,
    ShutdownDown,
    ShutdownUp,
    State,
    UpBytes,
    UpConnected,
    UpEof,
    UpFailed,
    UpLost,
    WriteDown,
    WriteUp,
)
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.stats import GatewayStats, ListenerStats
from wanfedtx.hostport import address_text
from wanfedtx.reactors import ReactorLike

__all__ = ["DATA_PATHS", "DownstreamProtocol", "RelayFactory", "RelaySettings", "UpstreamProtocol"]

log = Logger(namespace="wanfed.gateway")


class RelayFactory(Factory):
    """The listening side: one per listener; holds the current route table and the stats."""

    def __init__(
        self,
        reactor: ReactorLike,
        table: RouteTable,
        stats: GatewayStats,
        listener_stats: ListenerStats,
        settings: RelaySettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.tcp: IReactorTCP = reactor
        self.table = table
        self.stats = stats
        self.listener_stats = listener_stats
        self.settings = settings if settings is not None else RelaySettings()
        self.rng = rng if rng is not None else random.Random()
        self.active: set[DownstreamProtocol] = set()
        self.peer_log = peerlog.peer_log(reactor)

    def set_route_table(self, table: RouteTable) -> None:
        """Swap routing atomically: new connections use ``table``, open ones are untouched."""
        self.table = table

    def current_table(self) -> RouteTable:
        return self.table

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        limit = self.settings.max_connections
        if limit is not None and len(self.active) >= limit:
            self.listener_stats.downstream_cx_overflow += 1
            self.peer_log.warn(
                peerlog.CONNECTION_LIMIT,
                peerlog.MSG_CONNECTION_LIMIT,
                peer=address_text(addr),
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
    """One downstream connection: Twisted's IO around a :class:`~.conn.Connection`."""

    transport: Any

    def __init__(self, factory: RelayFactory) -> None:
        self.f = factory
        self.conn: Connection | None = None
        self.hello_timer: IDelayedCall | None = None
        self.idle_timer: IDelayedCall | None = None
        self.upstream: UpstreamProtocol | None = None
        self.moved = False  # bytes moved since the idle timer last fired
        self.lost = False

    @property
    def state(self) -> str:
        return self.conn.state.value if self.conn is not None else State.HELLO.value

    # -- lifecycle -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.f
        f.listener_stats.downstream_cx_total += 1
        self.conn = Connection(
            f.current_table,
            f.stats,
            f.listener_stats,
            f.settings,
            f.rng,
            peer=self._peer(),
        )
        f.active.add(self)
        _nodelay(self.transport)
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = f.settings.read_size
        self.hello_timer = f.clock.callLater(f.settings.hello_timeout, self._hello_late)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.f.active.discard(self)
        self._cancel_timers()
        self.handle(DownLost(_is_done(reason)))

    def abort(self, why: str) -> None:
        self.handle(Abort(why))

    def _peer(self) -> str:
        try:
            return address_text(self.transport.getPeer())
        except Exception:
            return "?"

    def _cancel_timers(self) -> None:
        for t in (self.hello_timer, self.idle_timer):
            if t is not None and t.active():
                t.cancel()
        self.hello_timer = self.idle_timer = None

    # -- the core and its effects ----------------------------------------------------------

    def handle(self, event: Any) -> None:
        if self.conn is None:
            return
        for effect in self.conn.handle(event):
            self._do(effect)

    def _do(self, e: Effect) -> None:
        dt = self.transport
        up = self.upstream
        ut = up.transport if up is not None and not up.closed else None
        if isinstance(e, WriteUp):
            if ut is not None:
                ut.write(e.data)
        elif isinstance(e, WriteDown):
            dt.write(e.data)
        elif isinstance(e, Log):
            if e.reason is None:
                log.emit(e.level, e.format, **e.fields)
            else:
                self.f.peer_log.emit(e.level, e.reason, e.format, **e.fields)
        elif isinstance(e, PauseDown):
            if self.hello_timer is not None and self.hello_timer.active():
                self.hello_timer.cancel()
            self.hello_timer = None
            dt.pauseProducing()
        elif isinstance(e, Connect):
            ep = e.endpoint
            self.f.tcp.connectTCP(
                ep.address, ep.port, _UpstreamFactory(self, ep), timeout=e.timeout
            )
        elif isinstance(e, Relay):
            self._relay(e.first)
        elif isinstance(e, ShutdownUp):
            if ut is not None:
                ut.loseWriteConnection()
        elif isinstance(e, ShutdownDown):
            dt.loseWriteConnection()
        elif isinstance(e, AbortUp):
            if ut is not None:
                ut.abortConnection()
        elif isinstance(e, Close):
            self._close(e, ut)

    def _close(self, e: Close, ut: Any) -> None:
        self._cancel_timers()
        if not e.clean:
            log.debug("gateway closing downstream {peer}: {why}", peer=self._peer(), why=e.why)
        for t in (ut, None if self.lost else self.transport):
            if t is None:
                continue
            if e.clean:
                t.loseConnection()
            else:
                t.abortConnection()

    def _relay(self, first: bytes) -> None:
        up = self.upstream
        if up is None or up.transport is None:
            return
        ut = up.transport
        dt = self.transport
        _nodelay(ut)
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

    # -- events from Twisted ---------------------------------------------------------------

    def _hello_late(self) -> None:
        self.hello_timer = None
        self.handle(HelloTimeout())

    def dataReceived(self, data: bytes) -> None:
        self.moved = True
        self.handle(DownBytes(data))

    def upstream_failed(self, ep: Endpoint, reason: Failure) -> None:
        self.handle(UpFailed(ep, reason.getErrorMessage(), _is_timeout(reason)))

    def upstream_connected(self, up: UpstreamProtocol) -> None:
        if self.upstream is None:
            self.upstream = up
        elif self.upstream is not up:  # never: one Connect is outstanding at a time
            up.transport.abortConnection()
            return
        self.handle(UpConnected())  # after the connection ended: AbortUp

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.conn is None or self.conn.state is not State.RELAYING:
            return
        if self.moved or (self.upstream is not None and self.upstream.moved):
            self.moved = False
            if self.upstream is not None:
                self.upstream.moved = False
            idle = self.f.settings.idle_timeout
            if idle is not None:
                self.idle_timer = self.f.clock.callLater(idle, self._idle_check)
            return
        self.handle(Idle())

    def readConnectionLost(self) -> None:
        """Downstream sent FIN: forward it as a write shutdown upstream."""
        self.handle(DownEof())

    def writeConnectionLost(self) -> None:
        pass


def _is_done(reason: Failure) -> bool:
    return bool(reason.check(error.ConnectionDone))


def _is_timeout(reason: Failure) -> bool:
    return bool(reason.check(error.TimeoutError))


def _nodelay(t: Any) -> None:
    if ITCPTransport.providedBy(t):
        try:
            t.setTcpNoDelay(True)
        except OSError:
            pass


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
        self.down.handle(UpBytes(data))

    def readConnectionLost(self) -> None:
        self.down.handle(UpEof())

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.closed:
            return
        self.closed = True
        if self.down.upstream is self:
            self.down.handle(UpLost(_is_done(reason)))


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
