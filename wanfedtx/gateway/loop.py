# -*- test-case-name: tests.integration.gateway.test_gateway_relay -*-
"""The ``loop`` data path: one dedicated thread accepts, reads the hello, connects and splices.

The ``twisted`` path pays for the reactor's per-connection machinery (protocols, connectors,
delayed calls). Here the whole connection lives in one level-triggered ``epoll`` loop in its own
thread: ``accept``, then each connection's sans-IO :class:`~wanfedtx.gateway.conn.Connection`
(the same core the ``twisted`` path drives: hello, routing with the
:class:`~wanfedtx.gateway.router.RouteTable` current at hello time, fail-over, counters) told
what the sockets did, and its effects carried out here: a non-blocking ``connect`` (deadline: the
cluster's connect timeout), then :class:`~wanfedtx.gateway.pump.Direction` pumps (``splice(2)``
through a pipe per direction, taken from and given back to a
:class:`~wanfedtx.gateway.pump.PipePool`; FIN forwarded as ``shutdown(SHUT_WR)``). Deadlines
(hello, connect) sit in a heap and idle connections are swept once a second, all on an injected
monotonic clock.

Once a connection relays, its two sockets go to the compiled relay where it was built
(``relaynative.py``: the pumps in C, no Python turn per socket event); otherwise the
:class:`~wanfedtx.gateway.pump.Direction` pumps above run here. The per-connection economies
(one listener event accepts the whole queue, the hello read in the accept turn, a local connect
relaying in the same turn, no ``epoll_ctl`` that is not needed) are in docs/benchmarks.md.

The reactor keeps the control plane: it swaps route tables (one attribute assignment, atomic),
serves the admin API, and reads the counters, which only this thread writes. Log events are
handed to the reactor thread with ``callFromThread``. Endpoints named by host name are resolved in
a small executor so the loop never blocks on DNS.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import random
import select
import socket
import time
from _socket import socket as _Socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wanfedtx.gateway import peerlog
from wanfedtx.gateway.conn import (
    Abort,
    AbortUp,
    Close,
    Connect,
    Connection,
    DownBytes,
    DownEof,
    DownLost,
    Event,
    HelloTimeout,
    Idle,
    Log,
    PauseDown,
    Relay,
    RelaySettings,
    State,
    UpConnected,
    UpEof,
    UpFailed,
)
from wanfedtx.gateway.errors import need
from wanfedtx.gateway.loopdns import Resolver
from wanfedtx.gateway.loopsock import LoopConn as _Conn
from wanfedtx.gateway.loopsock import accept_queue, connected_now, numeric_target
from wanfedtx.gateway.loopsock import listen_socket as listen_socket  # service.py imports it
from wanfedtx.gateway.loopthread import LoopThread
from wanfedtx.gateway.pump import Direction, PipePool, splice_available
from wanfedtx.gateway.relaynative import native_relay
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.stats import GatewayStats, ListenerStats
from wanfedtx.hostport import address_text
from wanfedtx.reactors import ReactorLike

log = Logger(namespace="wanfed.gateway")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
HELLO_DEADLINE, CONNECT_DEADLINE = range(2)
ACCEPT_BATCH = 64  # connections accepted per listener event at most
PARKED = -1  # a relaying socket's mask while it is out of the epoll set (a hang-up, see below)
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
ADDR_CACHE_MAX = 4096  # parsed endpoint addresses kept (endpoints come from the snapshot)
_UP_CONNECTED = UpConnected()
_DOWN_EOF = DownEof()
_UP_EOF = UpEof()
_DOWN_LOST_UNCLEAN = DownLost(clean=False)
_HELLO_TIMEOUT = HelloTimeout()
_IDLE = Idle()
_SOCKET_ERROR = Abort("socket error")
_HANG_UP = Abort("hang-up")
_RELAYING, _HELLO, _CONNECTING, _CLOSED = (
    State.RELAYING,
    State.HELLO,
    State.CONNECTING,
    State.CLOSED,
)


class RelayLoop:
    """Listening socket plus relay thread. Public methods run in the reactor thread."""

    def __init__(
        self,
        reactor: ReactorLike,
        address: tuple[str, int],
        table: RouteTable,
        stats: GatewayStats,
        settings: RelaySettings,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        listen_sock: socket.socket | None = None,
    ) -> None:
        """``listen_sock``: an already listening, non-blocking socket to accept from (the
        workers of one gateway share one, see :func:`listen_socket`); by default this loop binds
        its own on ``address``."""
        if not splice_available():
            raise RuntimeError("the loop data path needs Linux (splice, epoll); use twisted")
        self.reactor = reactor
        self.table = table
        self.stats = stats
        self.settings = settings
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.pipe_size = settings.pipe_size
        host, _ = address
        shared = listen_sock is not None
        self.sock = listen_sock if listen_sock is not None else listen_socket(address)
        # accepted sockets inherit TCP_NODELAY from the listener: one setsockopt, not one per
        # connection (listen_socket sets it too; a socket handed in may not have it)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pipes = PipePool(settings.pipe_size)
        self._addrs: dict[tuple[str, int], tuple[int, Any] | None] = {}
        self.address = (host, self.sock.getsockname()[1])
        self.listener_stats: ListenerStats = stats.listener(host, self.address[1])
        self._ep = select.epoll()
        self._loop = LoopThread(reactor, self._ep, "wanfed-gateway-loop")
        # workers sharing a socket: the kernel wakes one of them per new connection
        self._ep.register(self.sock.fileno(), EPOLLIN | (EPOLLEXCLUSIVE if shared else 0))
        self._fds: dict[int, _Conn] = {}
        self._native = native_relay(self._ep.fileno(), settings)
        self._conns: set[_Conn] = set()
        self._timers: list[tuple[float, int, int, _Conn, int]] = []
        self._seq = itertools.count()
        self._closed_now: set[int] = set()  # descriptors closed since the last poll
        self._now = clock()  # the clock read once per epoll batch
        self._family = self.sock.family.value
        self._resolver = Resolver(self._loop.wake.wake)
        self.peer_log = peerlog.peer_log(reactor)

    # -- reactor thread --------------------------------------------------------------------

    def set_route_table(self, table: RouteTable) -> None:
        self.table = table

    @property
    def active(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._loop.start(self._run)

    def stop(self) -> Deferred[None]:
        d = self._loop.stop()
        d.addBoth(_passthrough(self.peer_log.stop))
        return d

    def _log(self, level: str, fmt: str, **kw: Any) -> None:
        self.reactor.callFromThread(getattr(log, level), fmt, **kw)

    def _emit(self, e: Log) -> None:
        """A connection core's log line, written in the reactor thread; one a peer caused goes
        through the rate-limited log."""
        if e.reason is None:
            self.reactor.callFromThread(log.emit, e.level, e.format, **e.fields)
        else:
            self.reactor.callFromThread(self.peer_log.emit, e.level, e.reason, e.format, **e.fields)

    # -- loop thread -----------------------------------------------------------------------

    def _run(self) -> None:
        last_sweep = self._now = self.clock()
        listen_fd = self.sock.fileno()
        native = self._native
        try:
            while not self._loop.stopping:
                timeout = 1.0
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - self._now))
                if native is None:
                    self._dispatch(self._ep.poll(timeout), listen_fd)  # reads the clock
                else:
                    events, done = native.poll(timeout)
                    self._dispatch(events, listen_fd)
                    if done:
                        native.finish(done, self._handle)
                now = self._now
                while self._timers and self._timers[0][0] <= now:
                    _, _, kind, c, gen = heapq.heappop(self._timers)
                    if c.gen == gen and c.core.state is not State.CLOSED:
                        self._deadline(c, kind)
                if now - last_sweep >= 1.0:
                    last_sweep = now
                    self._sweep(now)
        except Exception:
            self.reactor.callFromThread(log.failure, "gateway relay loop crashed")
        finally:
            if native is not None:
                native.close_all(self._handle)
            for c in list(self._conns):
                self._handle(c, Abort("gateway stopping"))
                self._teardown(c)  # even if its core had closed already
            self._ep.close()
            self.sock.close()
            self._pipes.close()
            self._resolver.shutdown()
            self._loop.finished()

    def _dispatch(self, events: list[tuple[int, int]], listen_fd: int) -> None:
        """Handle one batch of epoll events."""
        self._now = self.clock()
        closed = self._closed_now
        closed.clear()
        fds = self._fds
        for fd, ev in events:
            c = fds.get(fd)
            if c is not None:
                if fd in closed:
                    # closed while handling this batch: the event is stale, and the number
                    # may already belong to a socket accepted in this batch
                    continue
                if c.core.state is _RELAYING:
                    self._relay_event(c, fd, ev)
                elif c.core.state is not _CLOSED:
                    self._event(c, fd, ev)
            elif fd in closed:
                continue
            elif fd == listen_fd:
                self._accept()
            elif fd == self._loop.wake.fd:
                self._drain_wake()

    def _drain_wake(self) -> None:
        self._loop.wake.drain()
        for c, gen, ep, result in self._resolver.take():
            if c.gen == gen and c.resolving and c.core.state is State.CONNECTING:
                c.resolving = False
                if isinstance(result, BaseException):
                    self._failed(c, ep, f"cannot resolve {ep.address}: {result}")
                else:
                    self._connect_to(c, ep, result)

    def _timer(self, c: _Conn, delay: float, kind: int) -> None:
        heapq.heappush(self._timers, (self._now + delay, next(self._seq), kind, c, c.gen))

    def _accept(self) -> None:
        """Accept every waiting connection (up to 64 per turn) and read each one's hello.

        As many accepts as the listener's queue holds (:func:`accept_queue`: no ``accept``
        failing with ``EAGAIN``), through the C-level ``_accept`` and C socket objects (no
        Python socket wrapper per connection).
        """
        ls = self.listener_stats
        limit = self.settings.max_connections
        accept = self.sock._accept  # type: ignore[attr-defined]  # CPython's C-level accept
        family = self._family
        conns, fds, register = self._conns, self._fds, self._ep.register
        for _ in range(accept_queue(self.sock, ACCEPT_BATCH)):
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._log("error", "gateway accept failed: {error}", error=e.strerror)
                    return
                continue
            ls.downstream_cx_total += 1
            if limit is not None and len(conns) >= limit:
                ls.downstream_cx_overflow += 1
                os.close(fd)
                self.reactor.callFromThread(
                    self.peer_log.warn,
                    peerlog.CONNECTION_LIMIT,
                    peerlog.MSG_CONNECTION_LIMIT,
                    peer=address_text(peer),
                    limit=limit,
                )
                continue
            try:
                s = _Socket(family, socket.SOCK_STREAM, 0, fd)
            except OSError:
                os.close(fd)
                continue
            s.setblocking(False)
            core = Connection(self._current_table, self.stats, ls, self.settings, self.rng, peer)
            c = _Conn(s, fd, core)
            conns.add(c)
            fds[fd] = c
            register(fd, EPOLLIN)
            c.mask_down = EPOLLIN
            # a client sends its ClientHello right after the handshake, so it is usually here
            # already: read it now instead of one epoll round later (EAGAIN costs one recv);
            # the hello deadline is only armed if the hello is not complete yet
            self._read_hello(c)
            if core.state is _HELLO:
                self._timer(c, self.settings.hello_timeout, HELLO_DEADLINE)

    def _current_table(self) -> RouteTable:
        return self.table

    # -- the core and its effects ----------------------------------------------------------

    def _handle(self, c: _Conn, event: Event) -> None:
        """Give ``event`` to the connection's core and carry out its effects, in order."""
        for e in c.core.handle(event):
            if isinstance(e, PauseDown):
                # the hello deadline no longer applies; downstream stays in the epoll set and
                # is paused (mask 0) only if it turns readable before the relay starts
                # (_event), so the usual connection, whose client waits for the server, needs
                # no epoll_ctl here
                c.gen += 1
            elif isinstance(e, Connect):
                self._connect(c, e)
            elif isinstance(e, Relay):
                self._relay(c, e.first)
            elif isinstance(e, Close):
                self._teardown(c)
            elif isinstance(e, Log):
                self._emit(e)
            elif isinstance(e, AbortUp):
                self._drop_up(c)
            # WriteUp/WriteDown/ShutdownUp/ShutdownDown: the splice pumps move the bytes and
            # forward FINs themselves; the core only counts them (Moved) and tracks the FINs

    def _connect(self, c: _Conn, e: Connect) -> None:
        ep = c.endpoint = e.endpoint
        c.connect_timeout = e.timeout
        key = (ep.address, ep.port)
        try:
            target = self._addrs[key]
        except KeyError:
            target = numeric_target(ep.address, ep.port)
            if len(self._addrs) >= ADDR_CACHE_MAX:
                self._addrs.clear()
            self._addrs[key] = target
        if target is None:
            c.resolving = True
            self._resolver.submit(c, c.gen, ep)
            return
        self._connect_to(c, ep, target)

    def _connect_to(self, c: _Conn, ep: Endpoint, target: tuple[int, Any]) -> None:
        """Start a non-blocking connect; relay at once if it is already established.

        A connect to this host (loopback, a local address) completes inside ``connect``
        itself, so ``getpeername`` answers right away and the relay starts in this turn: no
        ``EPOLLOUT`` round, no connect deadline, one ``epoll_ctl``. Otherwise (a remote
        endpoint: ``ENOTCONN`` while the SYN is out) the socket waits for ``EPOLLOUT`` within
        the cluster's connect timeout.
        """
        fam, addr = target
        s = _Socket(fam, _STREAM_NONBLOCK)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._failed(c, ep, os.strerror(err))
            return
        c.up = s
        fd = c.up_fd = s.fileno()
        self._fds[fd] = c
        if not self._connected_now(s):
            self._ep.register(fd, EPOLLOUT)
            c.mask_up = EPOLLOUT
            self._timer(c, c.connect_timeout, CONNECT_DEADLINE)
            return
        self._ep.register(fd, EPOLLIN)
        c.mask_up = EPOLLIN
        c.gen += 1  # as in _connect_done
        self._handle(c, _UP_CONNECTED)

    _connected_now = staticmethod(connected_now)  # a seam: tests take the EPOLLOUT path

    def _connect_done(self, c: _Conn, ev: int) -> None:
        """The upstream socket turned writable (or failed): the connect is over.

        A failed connect always reports ``EPOLLERR``; only then is ``SO_ERROR`` read (for
        the error text), so a connect that worked costs no ``getsockopt``.
        """
        up, endpoint = need(c.up, "upstream socket"), need(c.endpoint, "endpoint")
        if ev & (EPOLLERR | EPOLLHUP):
            err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err or ev & EPOLLERR:
                self._drop_up(c)
                self._failed(c, endpoint, os.strerror(err) if err else "connection failed")
                return
        c.gen += 1  # the connect deadline no longer applies
        self._handle(c, _UP_CONNECTED)

    def _failed(self, c: _Conn, ep: Endpoint, why: str, timed_out: bool = False) -> None:
        c.gen += 1  # this attempt's deadline no longer applies
        self._handle(c, UpFailed(ep, why, timed_out))

    def _relay(self, c: _Conn, first: bytes) -> None:
        if self._native is not None:
            # the relay may close both at once (a reset upstream): a later event of this batch
            # for either number is stale, whoever the number belongs to by then
            self._closed_now.update((c.down_fd, c.up_fd))
            if not self._native.hand_over(c, first, self._fds):
                self._handle(c, _SOCKET_ERROR)
            return
        up = need(c.up, "upstream socket")
        up_fd = c.up_fd
        to_up = c.to_up = Direction(c.down_fd, up_fd, first, up)
        to_down = c.to_down = Direction(up_fd, c.down_fd, b"", c.down)
        to_up.other, to_down.other = to_down, to_up
        c.idle_since = self._now
        # send the hello (and what followed it) now; reading either side waits for epoll, as
        # nothing else has been asked of the upstream yet and the client waits for its answer
        try:
            to_up.pipe_r, to_up.pipe_w = self._pipes.get()  # EMFILE: this pair, not the loop
            to_down.pipe_r, to_down.pipe_w = self._pipes.get()
            to_up.flush_pending()
            self._set_masks(c, to_up, to_down)
        except OSError:
            self._handle(c, _SOCKET_ERROR)

    # -- events from the sockets -----------------------------------------------------------

    def _relay_event(self, c: _Conn, fd: int, ev: int) -> None:
        """An event on a relaying connection: pump only the directions it concerns (reading
        from ``fd``, writing to ``fd``), then count, forward FINs and update the epoll masks.

        The hot path of the loop (several times per connection), kept to one method call
        plus the pumps.
        """
        if ev & EPOLLERR:
            self._handle(c, _SOCKET_ERROR)
            return
        to_up, to_down = c.to_up, c.to_down
        if to_up is None or to_down is None:  # never while relaying
            return
        if fd == c.down_fd:
            reading, writing = to_up, to_down
        else:
            reading, writing = to_down, to_up
        try:
            if ev & EPOLLOUT:
                moved = writing.pump()
                if ev & (EPOLLIN | EPOLLHUP):
                    moved = reading.pump() or moved
            else:
                moved = reading.pump()
        except OSError:
            self._handle(c, _SOCKET_ERROR)
            return
        # count the bytes, hand finished directions (FINs) to the core, set the masks
        if moved:
            c.idle_since = self._now
        core = c.core
        n_up, n_down = to_up.moved, to_down.moved
        if n_up or n_down:
            core.moved(n_up, n_down)
            to_up.moved = to_down.moved = 0
        if to_up.finished and not core.down_eof:
            self._handle(c, _DOWN_EOF)
        if to_down.finished and not core.up_eof:
            self._handle(c, _UP_EOF)
        if core.state is _CLOSED:
            return
        if not moved and ev & EPOLLHUP and not reading.want_out:
            self._handle(c, _HANG_UP)  # nothing can move: never spin on it
            return
        try:
            if not moved and ev & EPOLLHUP:
                # both FINs are in (epoll reports the hang-up whatever the mask), but bytes read
                # from this socket wait for the other one: keep them, stop hearing this one
                self._ep.unregister(fd)
                if fd == c.down_fd:
                    c.mask_down = PARKED
                else:
                    c.mask_up = PARKED
            self._set_masks(c, to_up, to_down)
        except OSError:  # epoll_ctl out of memory: this pair, not the loop
            self._handle(c, _SOCKET_ERROR)

    def _event(self, c: _Conn, fd: int, ev: int) -> None:
        """An event on a connection that is not relaying yet (hello, connecting)."""
        state = c.core.state
        if state is State.HELLO:
            self._read_hello(c)
        elif state is State.CONNECTING and fd == c.up_fd:
            self._connect_done(c, ev)
        elif fd == c.down_fd and ev & (EPOLLERR | EPOLLHUP):
            self._handle(c, _DOWN_LOST_UNCLEAN)  # gone while resolving or connecting
        elif fd == c.down_fd:
            # bytes (or a FIN) after the hello while the upstream is not up yet: stop reading,
            # the kernel buffers them until the relay starts
            self._set_mask(c, fd, 0)

    def _read_hello(self, c: _Conn) -> None:
        try:
            data = c.down.recv(16384)
        except BlockingIOError:
            return
        except OSError:
            self._handle(c, _DOWN_LOST_UNCLEAN)
            return
        self._handle(c, DownBytes(data) if data else _DOWN_EOF)

    def _deadline(self, c: _Conn, kind: int) -> None:
        state = c.core.state
        if kind == HELLO_DEADLINE and state is State.HELLO:
            self._handle(c, _HELLO_TIMEOUT)
        elif kind == CONNECT_DEADLINE and state is State.CONNECTING and c.endpoint is not None:
            self._drop_up(c)
            self._failed(c, c.endpoint, "connect timeout", True)

    def _drop_up(self, c: _Conn) -> None:
        if c.up is not None:
            self._fds.pop(c.up_fd, None)
            self._closed_now.add(c.up_fd)
            c.up.close()  # closing the only descriptor of a socket takes it out of the epoll set
        c.up = None
        c.up_fd = -1
        c.mask_up = 0

    def _set_mask(self, c: _Conn, fd: int, mask: int) -> None:
        if fd == c.down_fd:
            if mask != c.mask_down:
                self._ep.modify(fd, mask)
                c.mask_down = mask
        elif mask != c.mask_up:
            self._ep.modify(fd, mask)
            c.mask_up = mask

    def _set_masks(self, c: _Conn, up: Direction, down: Direction) -> None:
        """The epoll masks both sockets need now; ``epoll_ctl`` only for one that changed, and a
        parked socket (out of the set) back only once it needs an event."""
        mask = (0 if (up.eof or up.want_out) else EPOLLIN) | (EPOLLOUT if down.want_out else 0)
        if mask != c.mask_down and (mask or c.mask_down != PARKED):
            (self._ep.register if c.mask_down == PARKED else self._ep.modify)(c.down_fd, mask)
            c.mask_down = mask
        mask = (0 if (down.eof or down.want_out) else EPOLLIN) | (EPOLLOUT if up.want_out else 0)
        if mask != c.mask_up and (mask or c.mask_up != PARKED):
            (self._ep.register if c.mask_up == PARKED else self._ep.modify)(c.up_fd, mask)
            c.mask_up = mask

    def _sweep(self, now: float) -> None:
        if self._native is not None:
            self._native.sweep()  # the compiled relay times out its own idle pairs
        idle = self.settings.idle_timeout
        if idle is None:
            return
        for c in list(self._conns):
            if c.core.state is _RELAYING and not c.token and now - c.idle_since >= idle:
                self._handle(c, _IDLE)

    def _teardown(self, c: _Conn) -> None:
        """Close the sockets and pipes of a connection its core has closed."""
        if c not in self._conns:
            return
        c.gen += 1
        self._conns.discard(c)
        self._drop_up(c)
        self._fds.pop(c.down_fd, None)
        self._closed_now.add(c.down_fd)
        c.down.close()  # leaves the epoll set with its last descriptor
        for d in (c.to_up, c.to_down):
            if d is not None:
                d.close(self._pipes)


def _passthrough(fn: Callable[[], None]) -> Callable[[Any], Any]:
    def call(result: Any) -> Any:
        fn()
        return result

    return call
