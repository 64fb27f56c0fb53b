# -*- test-case-name: tests.unit.gateway.test_gateway_conn,tests.unit.gateway -*-
"""The sans-IO core of one relayed gateway connection, shared by the ``twisted`` and ``loop`` paths.

A :class:`Connection` goes ``hello -> connecting -> relaying -> closed`` (:data:`TRANSITIONS`).
It takes events (bytes of the ClientHello, the hello deadline, upstream connected or failed,
bytes either way, a FIN or a close on either side, the idle timeout) through :meth:`handle` and
returns effects (:class:`Connect` to an endpoint, :class:`Relay`, :class:`WriteUp` /
:class:`WriteDown`, half-closes, :class:`Close`, :class:`Log`). It reads the ClientHello with
:class:`~wanfedtx.gateway.clienthello.ClientHelloReader`, routes with the
:class:`~wanfedtx.gateway.router.RouteTable` current at hello time, fails over to the next
healthy endpoint, and bumps the Envoy-named counters of :mod:`wanfedtx.gateway.stats` (plain
in-memory counters, owned by the thread that drives the connection). Sockets, timers and the
log belong to the adapters: ``relay.py`` (Twisted transports) and ``loop.py`` (epoll + splice).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import LogLevel

from wanfedtx.gateway import peerlog
from wanfedtx.gateway.clienthello import (
    DEFAULT_MAX_HELLO_SIZE,
    ClientHello,
    ClientHelloReader,
    Rejected,
    whole_hello,
)
from wanfedtx.gateway.errors import need
from wanfedtx.gateway.router import Route, RouteTable
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.stats import ClusterStats, GatewayStats, ListenerStats, TcpStats
from wanfedtx.hostport import address_text

DATA_PATHS = ("loop", "twisted")


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
    """``loop`` (Linux: epoll + splice in relay threads) or ``twisted`` (the reactor)."""
    pipe_size: int = 1 << 20
    """Pipe capacity per direction on the loop path (the kernel caps it at
    /proc/sys/fs/pipe-max-size)."""
    workers: int = 1
    """Relay loops on the loop path, sharing one listening socket."""
    loop_relay: str = "auto"
    """Who relays on the loop path once a connection is routed: ``c`` (the compiled relay),
    ``python`` (pump.py), or ``auto`` (``c`` where it was built)."""


class State(enum.Enum):
    HELLO = "hello"
    CONNECTING = "connecting"
    RELAYING = "relaying"
    CLOSED = "closed"


# -- events --------------------------------------------------------------------------------


@attrs.frozen
class DownBytes:
    """Bytes read from downstream (the ClientHello while in ``hello``)."""

    data: bytes


@attrs.frozen
class UpBytes:
    """Bytes read from upstream."""

    data: bytes


@attrs.frozen
class Moved:
    """Bytes the kernel moved on the adapter's behalf (the loop path's splice pumps)."""

    to_up: int
    to_down: int


@attrs.frozen
class HelloTimeout:
    """The hello deadline passed."""


@attrs.frozen
class UpConnected:
    """The upstream connection asked for by the last :class:`Connect` is up."""


@attrs.frozen
class UpFailed:
    """The upstream connection asked for by the last :class:`Connect` failed."""

    endpoint: Endpoint
    why: str
    timed_out: bool = False


@attrs.frozen
class DownEof:
    """Downstream sent FIN."""


@attrs.frozen
class UpEof:
    """Upstream sent FIN."""


@attrs.frozen
class DownLost:
    """The downstream socket is gone (``clean``: an orderly close)."""

    clean: bool = True


@attrs.frozen
class UpLost:
    """The upstream socket is gone (``clean``: the remote closed it in order)."""

    clean: bool = True


@attrs.frozen
class Idle:
    """The adapter saw no byte either way for the idle timeout."""


@attrs.frozen
class Abort:
    """Close now (gateway stopping, socket error)."""

    why: str


Event = (
    DownBytes | UpBytes | Moved | HelloTimeout | UpConnected | UpFailed | DownEof | UpEof
    | DownLost | UpLost | Idle | Abort
)  # fmt: skip

# -- effects -------------------------------------------------------------------------------


@attrs.frozen
class PauseDown:
    """Stop reading downstream until :class:`Relay` (the kernel buffers what follows)."""


@attrs.frozen
class Connect:
    """Open an upstream connection to ``endpoint`` within ``timeout`` seconds."""

    endpoint: Endpoint
    timeout: float


@attrs.frozen
class Relay:
    """Upstream is up: send ``first`` (the hello and what followed it) upstream, then relay."""

    first: bytes


@attrs.frozen
class WriteUp:
    data: bytes


@attrs.frozen
class WriteDown:
    data: bytes


@attrs.frozen
class ShutdownUp:
    """Forward a downstream FIN: shut down the write side of the upstream socket."""


@attrs.frozen
class ShutdownDown:
    """Forward an upstream FIN: shut down the write side of the downstream socket."""


@attrs.frozen
class AbortUp:
    """An upstream connected after the connection ended: abort that socket."""


@attrs.frozen
class Close:
    """Close both sides (``clean``: orderly close, else abort); the connection is over."""

    clean: bool
    why: str


@attrs.frozen
class Log:
    """A log line; with ``reason`` it is peer-caused and goes through the rate-limited log."""

    level: LogLevel
    reason: str | None
    format: str
    fields: dict[str, Any]


Effect = (
    PauseDown | Connect | Relay | WriteUp | WriteDown | ShutdownUp | ShutdownDown | AbortUp
    | Close | Log
)  # fmt: skip

# The states each state may move to; anything else is a bug (checked in the tests).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.HELLO: frozenset({State.CONNECTING, State.CLOSED}),
    State.CONNECTING: frozenset({State.RELAYING, State.CLOSED}),
    State.RELAYING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

# effects without fields are immutable: one instance each, not one per connection
_PAUSEDOWN, _ABORTUP = PauseDown(), AbortUp()
_SHUTDOWNUP, _SHUTDOWNDOWN = ShutdownUp(), ShutdownDown()
_UNROUTED_TCP = TcpStats()  # placeholders until a connection is routed (never rendered)
_UNROUTED_CLUSTER = ClusterStats()


class Connection:
    """One downstream connection's state, routing and counters; no IO.

    Kept cheap per connection: slots, the handlers of the current state looked up by event
    type only (``_on``, swapped on each transition), and the peer's address formatted only
    when a log line needs it.
    """

    __slots__ = (
        "_current_table",
        "_on",
        "_peer",
        "cluster",
        "down_eof",
        "listener_stats",
        "pending",
        "reader",
        "rng",
        "route",
        "settings",
        "sni",
        "state",
        "stats",
        "table",
        "tcp",
        "tried",
        "up_eof",
    )

    def __init__(
        self,
        table: Callable[[], RouteTable],
        stats: GatewayStats,
        listener_stats: ListenerStats,
        settings: RelaySettings,
        rng: random.Random,
        peer: object = "?",
    ) -> None:
        """``peer``: the downstream's address as text, or a ``(host, port, ...)`` tuple that
        is turned into text only if a log line needs it."""
        self._current_table = table
        self.stats = stats
        self.listener_stats = listener_stats
        self.settings = settings
        self.rng = rng
        self._peer = peer
        self.state = State.HELLO
        self._on = _ON_HELLO
        # made on the first bytes unless they hold the whole hello (the usual case)
        self.reader: ClientHelloReader | None = None
        self.sni: str | None = None
        self.route: Route | None = None
        self.table: RouteTable | None = None
        self.tried: list[Endpoint] = []
        self.pending = bytearray()
        self.tcp: TcpStats = _UNROUTED_TCP
        self.cluster: ClusterStats = _UNROUTED_CLUSTER
        self.down_eof = False
        self.up_eof = False
        listener_stats.downstream_cx_active += 1

    @property
    def peer(self) -> str:
        """The downstream's address as text (``host:port``)."""
        p = self._peer
        if not isinstance(p, str):
            p = self._peer = address_text(p)
        return p

    def handle(self, event: Event) -> list[Effect]:
        """Apply ``event``; return what the adapter must do, in order."""
        handler = self._on.get(type(event))
        if handler is None:
            return []
        out: list[Effect] = []
        handler(self, event, out)
        return out

    # -- hello ---------------------------------------------------------------------------

    def _log(
        self, out: list[Effect], level: LogLevel, reason: str | None, fmt: str, **kw: Any
    ) -> None:
        out.append(Log(level, reason, fmt, {"peer": self.peer, **kw}))

    def _close(self, out: list[Effect], clean: bool, why: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.RELAYING:
            self.cluster.upstream_cx_active -= 1
        self.state = State.CLOSED
        self._on = _ON_CLOSED
        self.listener_stats.downstream_cx_active -= 1
        out.append(Close(clean, why))

    def _hello_bytes(self, ev: DownBytes, out: list[Effect]) -> None:
        reader = self.reader
        if reader is None:
            # the first bytes: one record holding the whole hello needs no reader
            whole = whole_hello(ev.data, self.settings.max_hello_size)
            if isinstance(whole, ClientHello):
                self._hello(whole, ev.data, out)
                return
            reader = self.reader = ClientHelloReader(self.settings.max_hello_size)
        outcome = reader.receive_data(ev.data)
        if outcome is None:
            return
        if isinstance(outcome, Rejected):
            self.stats.inspector.count_rejected(outcome.reason)
            self._log(
                out,
                LogLevel.info,
                peerlog.BAD_HELLO,
                peerlog.MSG_BAD_HELLO,
                cause=f"{outcome.reason}: {outcome.detail}",
            )
            self._close(out, False, outcome.reason)
            return
        self._hello(outcome, reader.buffered, out)

    def _hello(self, hello: ClientHello, received: bytes, out: list[Effect]) -> None:
        """Route the connection by its hello; ``received``: every byte read so far."""
        self.stats.inspector.count_hello(hello)
        self.sni = hello.server_name
        table = self._current_table()  # the snapshot current now is the one this connection uses
        fc, route = table.lookup(hello.server_name)
        if fc is None:
            self.listener_stats.no_filter_chain_match += 1
            self._log(
                out, LogLevel.info, peerlog.UNKNOWN_SNI, peerlog.MSG_UNKNOWN_SNI, sni=self.sni
            )
            self._close(out, False, "no filter chain")
            return
        self.tcp = self.stats.tcp_prefix(fc.stat_prefix)
        self.tcp.downstream_cx_total += 1
        if route is None or route.endpoints is None:
            self.tcp.downstream_cx_no_route += 1
            self._log(out, LogLevel.info, peerlog.NO_ROUTE, peerlog.MSG_NO_ROUTE, sni=self.sni)
            self._close(out, False, "no route")
            return
        self.route = route
        self.table = table
        self.cluster = self.stats.cluster(route.cluster)
        self.pending += received
        self.reader = None
        self.state = State.CONNECTING
        self._on = _ON_CONNECTING
        out.append(_PAUSEDOWN)
        self._connect_next(out)

    def _hello_timeout(self, ev: HelloTimeout, out: list[Effect]) -> None:
        self.listener_stats.downstream_pre_cx_timeout += 1
        self._log(
            out,
            LogLevel.info,
            peerlog.HELLO_TIMEOUT,
            peerlog.MSG_HELLO_TIMEOUT,
            timeout=self.settings.hello_timeout,
        )
        self._close(out, False, "hello timeout")

    # -- connecting ----------------------------------------------------------------------

    def _connect_next(self, out: list[Effect]) -> None:
        route = need(self.route, "route")
        table = need(self.table, "route table")
        limit = self.settings.max_connect_attempts
        ep = None
        if limit is None or len(self.tried) < limit:
            ep = table.pick(route, self.rng, self.tried)
        if ep is None:
            if not self.tried:
                self.cluster.upstream_cx_none_healthy += 1
            self._log(
                out,
                LogLevel.warn,
                peerlog.NO_ENDPOINT,
                peerlog.MSG_NO_ENDPOINT,
                cluster=route.cluster,
                tried=len(self.tried),
            )
            self._close(out, False, "no endpoint")
            return
        self.tried.append(ep)
        self.cluster.upstream_cx_total += 1
        out.append(Connect(ep, table.connect_timeout(route.cluster)))

    def _pending_bytes(self, ev: DownBytes, out: list[Effect]) -> None:
        self.pending += ev.data

    def _up_failed(self, ev: UpFailed, out: list[Effect]) -> None:
        self.cluster.upstream_cx_connect_fail += 1
        if ev.timed_out:
            self.cluster.upstream_cx_connect_timeout += 1
        self._log(
            out,
            LogLevel.warn,
            peerlog.UPSTREAM_CONNECT,
            peerlog.MSG_UPSTREAM_CONNECT,
            address=ev.endpoint.address,
            port=ev.endpoint.port,
            cluster=self.route.cluster if self.route else "",
            why=ev.why,
        )
        if self.state is State.CONNECTING:
            self._connect_next(out)

    def _up_connected(self, ev: UpConnected, out: list[Effect]) -> None:
        self.cluster.upstream_cx_active += 1
        first = bytes(self.pending)
        self.pending = bytearray()
        self.tcp.downstream_cx_rx_bytes_total += len(first)
        self.cluster.upstream_cx_tx_bytes_total += len(first)
        self.state = State.RELAYING
        self._on = _ON_RELAYING
        out.append(Relay(first))

    def _stray_upstream(self, ev: UpConnected, out: list[Effect]) -> None:
        out.append(_ABORTUP)

    # -- relaying ------------------------------------------------------------------------

    def _down_bytes(self, ev: DownBytes, out: list[Effect]) -> None:
        n = len(ev.data)
        self.tcp.downstream_cx_rx_bytes_total += n
        self.cluster.upstream_cx_tx_bytes_total += n
        out.append(WriteUp(ev.data))

    def _up_bytes(self, ev: UpBytes, out: list[Effect]) -> None:
        n = len(ev.data)
        self.tcp.downstream_cx_tx_bytes_total += n
        self.cluster.upstream_cx_rx_bytes_total += n
        out.append(WriteDown(ev.data))

    def _moved(self, ev: Moved, out: list[Effect]) -> None:
        self.moved(ev.to_up, ev.to_down)

    def moved(self, to_up: int, to_down: int) -> None:
        """``handle(Moved(to_up, to_down))`` without the event object, for the loop path's
        pumps (called for every pump that moved bytes); counts only while relaying."""
        if self.state is not State.RELAYING:
            return
        tcp, cluster = self.tcp, self.cluster
        tcp.downstream_cx_rx_bytes_total += to_up
        cluster.upstream_cx_tx_bytes_total += to_up
        tcp.downstream_cx_tx_bytes_total += to_down
        cluster.upstream_cx_rx_bytes_total += to_down

    def _idle(self, ev: Idle, out: list[Effect]) -> None:
        self.tcp.idle_timeout += 1
        self._log(out, LogLevel.debug, None, peerlog.MSG_IDLE, sni=self.sni)
        self._close(out, True, "idle")

    # -- closing -------------------------------------------------------------------------

    def _down_eof_early(self, ev: DownEof, out: list[Effect]) -> None:
        self.down_eof = True
        self._close(out, True, "downstream closed")

    def _down_eof(self, ev: DownEof, out: list[Effect]) -> None:
        self.down_eof = True
        if self.up_eof:
            self._close(out, True, "both sides closed")
        else:
            out.append(_SHUTDOWNUP)

    def _up_eof(self, ev: UpEof, out: list[Effect]) -> None:
        self.up_eof = True
        if self.down_eof:
            self._close(out, True, "both sides closed")
        else:
            out.append(_SHUTDOWNDOWN)

    def _down_lost(self, ev: DownLost, out: list[Effect]) -> None:
        self._close(out, ev.clean, "downstream lost")

    def _up_lost(self, ev: UpLost, out: list[Effect]) -> None:
        if ev.clean:
            self.cluster.upstream_cx_destroy_remote += 1
        else:
            self.cluster.upstream_cx_destroy_local += 1
        self._close(out, ev.clean, "upstream lost")

    def _abort(self, ev: Abort, out: list[Effect]) -> None:
        self._close(out, False, ev.why)


def cluster_timeout(table: RouteTable, cluster: str) -> float:
    """The connect timeout of ``cluster`` in ``table`` (seconds; 5 s if it is not there)."""
    return table.connect_timeout(cluster)


_H = Callable[[Connection, Any, list[Effect]], None]
_C = Connection
_HELLO, _CONN, _RELAY, _CLOSED = State.HELLO, State.CONNECTING, State.RELAYING, State.CLOSED

# (state, event) -> handler; a pair that is not here leaves the connection as it is.
_TABLE: dict[tuple[State, type], _H] = {
    (_HELLO, DownBytes): _C._hello_bytes,
    (_HELLO, HelloTimeout): _C._hello_timeout,
    (_HELLO, DownEof): _C._down_eof_early,
    (_HELLO, DownLost): _C._down_lost,
    (_HELLO, Abort): _C._abort,
    (_CONN, DownBytes): _C._pending_bytes,
    (_CONN, UpConnected): _C._up_connected,
    (_CONN, UpFailed): _C._up_failed,
    (_CONN, DownEof): _C._down_eof_early,
    (_CONN, DownLost): _C._down_lost,
    (_CONN, Abort): _C._abort,
    (_RELAY, DownBytes): _C._down_bytes,
    (_RELAY, UpBytes): _C._up_bytes,
    (_RELAY, Moved): _C._moved,
    (_RELAY, DownEof): _C._down_eof,
    (_RELAY, UpEof): _C._up_eof,
    (_RELAY, DownLost): _C._down_lost,
    (_RELAY, UpLost): _C._up_lost,
    (_RELAY, Idle): _C._idle,
    (_RELAY, Abort): _C._abort,
    # closed is terminal: late upstream news is counted or cleaned up, the state stays
    (_CLOSED, UpConnected): _C._stray_upstream,
    (_CLOSED, UpFailed): _C._up_failed,
    (_CLOSED, UpLost): _C._up_lost,
}
# the same table split by state, so a connection finds its handler by the event's type alone
_BY_STATE: dict[State, dict[type, _H]] = {st: {} for st in State}
for (_st, _ev), _h in _TABLE.items():
    _BY_STATE[_st][_ev] = _h
_ON_HELLO, _ON_CONNECTING, _ON_RELAYING, _ON_CLOSED = (_BY_STATE[st] for st in State)
