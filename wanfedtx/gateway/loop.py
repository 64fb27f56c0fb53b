"""The ``loop`` data path: one dedicated thread accepts, reads the hello, connects and splices.

The Twisted paths pay for the reactor's per-connection machinery (protocols, connectors, delayed
calls) and, with the ``splice`` path, for GIL hand-overs between the reactor and the relay thread
on every new connection. Here the whole connection lives in one level-triggered ``epoll`` loop in
its own thread: ``accept``, the sans-IO :class:`~wanfedtx.gateway.clienthello.ClientHelloReader`,
the :class:`~wanfedtx.gateway.router.RouteTable` current at hello time, a non-blocking
``connect`` with fail-over to the next healthy endpoint (on error or on the cluster's connect
timeout), then :class:`~wanfedtx.gateway.splice.Direction` pumps (``splice(2)`` through a pipe per
direction, FIN forwarded as ``shutdown(SHUT_WR)``). Deadlines (hello, connect) sit in a heap and
idle connections are swept once a second, all on an injected monotonic clock.

The reactor keeps the control plane: it swaps route tables (one attribute assignment, atomic),
serves the admin API, and reads the counters, which only this thread writes. Log events are
handed to the reactor thread with ``callFromThread``. Endpoints named by host name are resolved in
a small executor so the loop never blocks on DNS.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel

from wanfedtx.gateway import peerlog
from wanfedtx.gateway.clienthello import (
    ClientHello,
    ClientHelloReader,
    Rejected,
)
from wanfedtx.gateway.errors import need
from wanfedtx.gateway.loopthread import LoopThread
from wanfedtx.gateway.router import Route, RouteTable, pick_endpoint
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.pump import Direction, splice_available
from wanfedtx.gateway.stats import ClusterStats, GatewayStats, ListenerStats, TcpStats
from wanfedtx.netlimits import listen_backlog

log = Logger(namespace="wanfed.gateway")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
HELLO, RESOLVING, CONNECTING, RELAYING, CLOSED = range(5)


class _Conn:
    __slots__ = (
        "cluster",
        "down",
        "down_fd",
        "endpoint",
        "gen",
        "idle_since",
        "mask_down",
        "mask_up",
        "peer",
        "reader",
        "route",
        "state",
        "tcp",
        "to_down",
        "to_up",
        "tried",
        "up",
        "up_fd",
    )

    def __init__(self, down: socket.socket, max_hello: int, peer: str = "?") -> None:
        self.down = down
        self.peer = peer
        self.down_fd = down.fileno()
        self.up: socket.socket | None = None
        self.up_fd = -1
        self.reader: ClientHelloReader | None = ClientHelloReader(max_hello)
        self.state = HELLO
        self.gen = 0  # bumped whenever a deadline must be ignored
        self.route: Route | None = None
        self.tried: list[Endpoint] = []
        self.endpoint: Endpoint | None = None
        self.tcp: TcpStats | None = None
        self.cluster: ClusterStats | None = None
        self.to_up: Direction | None = None
        self.to_down: Direction | None = None
        self.idle_since = 0.0
        self.mask_down = 0
        self.mask_up = 0


class RelayLoop:
    """Listening socket plus relay thread. Public methods run in the reactor thread."""

    def __init__(
        self,
        reactor: Any,
        address: tuple[str, int],
        table: RouteTable,
        stats: GatewayStats,
        settings: Any,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        reuse_port: bool = False,
    ) -> None:
        if not splice_available():
            raise RuntimeError("the loop data path needs Linux (splice, epoll); use twisted")
        self.reactor = reactor
        self.table = table
        self.stats = stats
        self.settings = settings
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.pipe_size = settings.pipe_size
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # several loops share the port; the kernel spreads connections
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(listen_backlog())
        self.sock.setblocking(False)
        self.address = (host, self.sock.getsockname()[1])
        self.listener_stats: ListenerStats = stats.listener(host, self.address[1])
        self._ep = select.epoll()
        self._loop = LoopThread(reactor, self._ep, "wanfed-gateway-loop")
        self._ep.register(self.sock.fileno(), EPOLLIN)
        self._fds: dict[int, _Conn] = {}
        self._conns: set[_Conn] = set()
        self._timers: list[tuple[float, int, int, _Conn, int]] = []
        self._seq = itertools.count()
        self._resolved: list[tuple[_Conn, int, Endpoint, Any]] = []
        self._lock = threading.Lock()
        self._resolver: ThreadPoolExecutor | None = None
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

    def _peer_log(self, level: LogLevel, reason: str, fmt: str, c: _Conn, **kw: Any) -> None:
        """A line a peer caused: rate-limited per reason (in the reactor thread)."""
        self.reactor.callFromThread(self.peer_log.emit, level, reason, fmt, peer=c.peer, **kw)

    # -- loop thread -----------------------------------------------------------------------

    def _run(self) -> None:
        last_sweep = self.clock()
        listen_fd = self.sock.fileno()
        try:
            while not self._loop.stopping:
                now = self.clock()
                timeout = 1.0
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - now))
                for fd, ev in self._ep.poll(timeout):
                    if fd == listen_fd:
                        self._accept()
                    elif fd == self._loop.wake.fd:
                        self._drain_wake()
                    else:
                        c = self._fds.get(fd)
                        if c is not None and c.state != CLOSED:
                            self._event(c, fd, ev)
                now = self.clock()
                while self._timers and self._timers[0][0] <= now:
                    _, _, kind, c, gen = heapq.heappop(self._timers)
                    if c.gen == gen and c.state != CLOSED:
                        self._deadline(c, kind)
                if now - last_sweep >= 1.0:
                    last_sweep = now
                    self._sweep(now)
        except Exception:
            self.reactor.callFromThread(log.failure, "gateway relay loop crashed")
        finally:
            for c in list(self._conns):
                self._close(c)
            self._ep.close()
            self.sock.close()
            if self._resolver is not None:
                self._resolver.shutdown(wait=False)
            self._loop.finished()

    def _drain_wake(self) -> None:
        self._loop.wake.drain()
        with self._lock:
            done, self._resolved = self._resolved, []
        for c, gen, ep, result in done:
            if c.gen == gen and c.state == RESOLVING:
                if isinstance(result, BaseException):
                    self._connect_failed(c, ep, f"cannot resolve {ep.address}: {result}", False)
                else:
                    self._connect_to(c, ep, result)

    def _timer(self, c: _Conn, delay: float, kind: int) -> None:
        heapq.heappush(self._timers, (self.clock() + delay, next(self._seq), kind, c, c.gen))

    def _accept(self) -> None:
        ls = self.listener_stats
        limit = self.settings.max_connections
        for _ in range(64):
            try:
                s, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._log("error", "gateway accept failed: {error}", error=e.strerror)
                    return
                continue
            ls.downstream_cx_total += 1
            if limit is not None and len(self._conns) >= limit:
                ls.downstream_cx_overflow += 1
                s.close()
                self.reactor.callFromThread(
                    self.peer_log.warn,
                    peerlog.CONNECTION_LIMIT,
                    peerlog.MSG_CONNECTION_LIMIT,
                    peer=peerlog.host_port(peer),
                    limit=limit,
                )
                continue
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(s, self.settings.max_hello_size, peerlog.host_port(peer))
            ls.downstream_cx_active += 1
            self._conns.add(c)
            self._fds[c.down_fd] = c
            self._ep.register(c.down_fd, EPOLLIN)
            c.mask_down = EPOLLIN
            self._timer(c, self.settings.hello_timeout, HELLO)

    def _event(self, c: _Conn, fd: int, ev: int) -> None:
        if c.state == RELAYING:
            if ev & EPOLLERR:
                self._close(c)
                return
            # pump only the directions this event concerns: reading from fd, writing to fd
            if fd == c.down_fd:
                reading, writing = c.to_up, c.to_down
            else:
                reading, writing = c.to_down, c.to_up
            reading, writing = need(reading, "direction"), need(writing, "direction")
            if ev & EPOLLOUT:
                dirs: tuple[Direction, ...] = (
                    (writing, reading) if ev & (EPOLLIN | EPOLLHUP) else (writing,)
                )
            else:
                dirs = (reading,)
            if not self._pump(c, dirs) and ev & EPOLLHUP:
                self._close(c)
        elif c.state == HELLO:
            self._read_hello(c)
        elif c.state == CONNECTING and fd == c.up_fd:
            self._connect_done(c)
        elif fd == c.down_fd and ev & (EPOLLERR | EPOLLHUP):
            self._close(c)  # downstream went away while resolving or connecting

    def _read_hello(self, c: _Conn) -> None:
        try:
            data = c.down.recv(16384)
        except BlockingIOError:
            return
        except OSError:
            self._close(c)
            return
        if not data:
            self._close(c)
            return
        outcome = need(c.reader, "hello reader").receive_data(data)
        if outcome is None:
            return
        if isinstance(outcome, Rejected):
            self._rejected(c, outcome)
        else:
            self._hello(c, outcome)

    def _rejected(self, c: _Conn, r: Rejected) -> None:
        self.stats.inspector.count_rejected(r.reason)
        self._peer_log(
            LogLevel.info,
            peerlog.BAD_HELLO,
            peerlog.MSG_BAD_HELLO,
            c,
            cause=f"{r.reason}: {r.detail}",
        )
        self._close(c)

    def _hello(self, c: _Conn, hello: ClientHello) -> None:
        self.stats.inspector.count_hello(hello)
        c.gen += 1  # the hello deadline no longer applies
        table = self.table
        fc = table.match_chain(hello.server_name)
        if fc is None:
            self.listener_stats.no_filter_chain_match += 1
            self._peer_log(
                LogLevel.info,
                peerlog.UNKNOWN_SNI,
                peerlog.MSG_UNKNOWN_SNI,
                c,
                sni=hello.server_name,
            )
            self._close(c)
            return
        c.tcp = self.stats.tcp_prefix(fc.stat_prefix)
        c.tcp.downstream_cx_total += 1
        route = table.route(hello.server_name)
        if route is None or route.endpoints is None:
            c.tcp.downstream_cx_no_route += 1
            self._peer_log(
                LogLevel.info, peerlog.NO_ROUTE, peerlog.MSG_NO_ROUTE, c, sni=hello.server_name
            )
            self._close(c)
            return
        c.route = route
        c.cluster = self.stats.cluster(route.cluster)
        self._set_mask(c, c.down_fd, 0)  # the kernel buffers what follows until we relay
        self._connect_next(c, _cluster_timeout(table, route.cluster))

    def _connect_next(self, c: _Conn, timeout: float | None = None) -> None:
        route = need(c.route, "route")
        cluster = need(c.cluster, "cluster stats")
        limit = self.settings.max_connect_attempts
        ep = None
        if limit is None or len(c.tried) < limit:
            ep = pick_endpoint(need(route.endpoints, "route endpoints"), self.rng, c.tried)
        if ep is None:
            if not c.tried:
                cluster.upstream_cx_none_healthy += 1
            self._peer_log(
                LogLevel.warn,
                peerlog.NO_ENDPOINT,
                peerlog.MSG_NO_ENDPOINT,
                c,
                cluster=route.cluster,
                tried=len(c.tried),
            )
            self._close(c)
            return
        c.tried.append(ep)
        c.endpoint = ep
        cluster.upstream_cx_total += 1
        try:
            ip = ipaddress.ip_address(ep.address)
        except ValueError:
            self._resolve(c, ep)
            return
        fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self._connect_to(c, ep, (fam, (ep.address, ep.port)))

    def _resolve(self, c: _Conn, ep: Endpoint) -> None:
        c.state = RESOLVING
        gen = c.gen
        if self._resolver is None:
            self._resolver = ThreadPoolExecutor(2, thread_name_prefix="wanfed-gateway-dns")

        def work() -> None:
            try:
                info = socket.getaddrinfo(ep.address, ep.port, type=socket.SOCK_STREAM)
                result: Any = (info[0][0], info[0][4])
            except OSError as e:
                result = e
            with self._lock:
                self._resolved.append((c, gen, ep, result))
            self._loop.wake.wake(b"r")

        self._resolver.submit(work)

    def _connect_to(self, c: _Conn, ep: Endpoint, target: tuple[int, Any]) -> None:
        fam, addr = target
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._connect_failed(c, ep, os.strerror(err), False)
            return
        c.up = s
        c.up_fd = s.fileno()
        c.state = CONNECTING
        self._fds[c.up_fd] = c
        self._ep.register(c.up_fd, EPOLLOUT)
        c.mask_up = EPOLLOUT
        route = need(c.route, "route")
        self._timer(c, _cluster_timeout(self.table, route.cluster), CONNECTING)

    def _connect_done(self, c: _Conn) -> None:
        up, endpoint = need(c.up, "upstream socket"), need(c.endpoint, "endpoint")
        err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop_up(c)
            self._connect_failed(c, endpoint, os.strerror(err), False)
            return
        c.gen += 1  # the connect deadline no longer applies
        cluster, tcp = need(c.cluster, "cluster stats"), need(c.tcp, "tcp stats")
        first = need(c.reader, "hello reader").buffered
        c.reader = None
        cluster.upstream_cx_active += 1
        tcp.downstream_cx_rx_bytes_total += len(first)
        cluster.upstream_cx_tx_bytes_total += len(first)
        c.to_up = Direction(c.down_fd, c.up_fd, first)
        c.to_down = Direction(c.up_fd, c.down_fd, b"")
        c.to_up.open_pipe(self.pipe_size)
        c.to_down.open_pipe(self.pipe_size)
        c.state = RELAYING
        c.idle_since = self.clock()
        self._pump(c)

    def _connect_failed(self, c: _Conn, ep: Endpoint, why: str, timed_out: bool) -> None:
        cluster, route = need(c.cluster, "cluster stats"), need(c.route, "route")
        cluster.upstream_cx_connect_fail += 1
        if timed_out:
            cluster.upstream_cx_connect_timeout += 1
        self._peer_log(
            LogLevel.warn,
            peerlog.UPSTREAM_CONNECT,
            peerlog.MSG_UPSTREAM_CONNECT,
            c,
            address=ep.address,
            port=ep.port,
            cluster=route.cluster,
            why=why,
        )
        c.gen += 1
        c.state = CONNECTING
        self._connect_next(c)

    def _deadline(self, c: _Conn, kind: int) -> None:
        if kind == HELLO and c.state == HELLO:
            self.listener_stats.downstream_pre_cx_timeout += 1
            self._peer_log(
                LogLevel.info,
                peerlog.HELLO_TIMEOUT,
                peerlog.MSG_HELLO_TIMEOUT,
                c,
                timeout=self.settings.hello_timeout,
            )
            self._close(c)
        elif kind == CONNECTING and c.state == CONNECTING and c.endpoint is not None:
            self._drop_up(c)
            self._connect_failed(c, c.endpoint, "connect timeout", True)

    def _drop_up(self, c: _Conn) -> None:
        if c.up is not None:
            self._fds.pop(c.up_fd, None)
            try:
                self._ep.unregister(c.up_fd)
            except OSError:
                pass
            c.up.close()
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

    def _pump(self, c: _Conn, dirs: tuple[Direction, ...] = ()) -> bool:
        up, down = need(c.to_up, "direction"), need(c.to_down, "direction")
        try:
            moved = False
            for d in dirs or (up, down):
                moved = d.pump() or moved
        except OSError:
            self._close(c)
            return True
        if moved:
            c.idle_since = self.clock()
        if up.moved or down.moved:
            tcp, cluster = need(c.tcp, "tcp stats"), need(c.cluster, "cluster stats")
            tcp.downstream_cx_rx_bytes_total += up.moved
            cluster.upstream_cx_tx_bytes_total += up.moved
            tcp.downstream_cx_tx_bytes_total += down.moved
            cluster.upstream_cx_rx_bytes_total += down.moved
            up.moved = down.moved = 0
        if up.finished and down.finished:
            self._close(c)
            return True
        self._set_mask(
            c,
            c.down_fd,
            (0 if (up.eof or up.want_out) else EPOLLIN) | (EPOLLOUT if down.want_out else 0),
        )
        self._set_mask(
            c,
            c.up_fd,
            (0 if (down.eof or down.want_out) else EPOLLIN) | (EPOLLOUT if up.want_out else 0),
        )
        return moved

    def _sweep(self, now: float) -> None:
        idle = self.settings.idle_timeout
        if idle is None:
            return
        for c in list(self._conns):
            if c.state == RELAYING and now - c.idle_since >= idle:
                need(c.tcp, "tcp stats").idle_timeout += 1
                self._log("debug", peerlog.MSG_IDLE, peer=c.peer)
                self._close(c)

    def _close(self, c: _Conn) -> None:
        if c.state == CLOSED:
            return
        if c.state == RELAYING and c.cluster is not None:
            c.cluster.upstream_cx_active -= 1
        c.state = CLOSED
        c.gen += 1
        self._conns.discard(c)
        self.listener_stats.downstream_cx_active -= 1
        self._drop_up(c)
        self._fds.pop(c.down_fd, None)
        try:
            self._ep.unregister(c.down_fd)
        except OSError:
            pass
        c.down.close()
        for d in (c.to_up, c.to_down):
            if d is not None:
                d.close()


def _cluster_timeout(table: RouteTable, cluster: str) -> float:
    for cl in table.snapshot.clusters:
        if cl.name == cluster:
            return cl.connect_timeout_ms / 1000.0
    return 5.0


def _passthrough(fn: Callable[[], None]) -> Callable[[Any], Any]:
    def call(result: Any) -> Any:
        fn()
        return result

    return call
