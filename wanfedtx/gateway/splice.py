"""A dedicated relay thread moving bytes between socket pairs with ``splice(2)`` (Linux).

After the reactor has read the ClientHello and connected upstream, it hands both sockets (detached
descriptors) to :class:`SpliceRelay`. One thread runs a level-triggered ``epoll`` loop; each
direction of a pair owns a pipe, and bytes go socket -> pipe -> socket inside the kernel, never
through Python objects. Backpressure is the pipe: a direction whose destination is full stops
reading its source until ``EPOLLOUT``. A FIN is forwarded as ``shutdown(SHUT_WR)`` once the pipe is
drained; a pair is closed when both directions are finished, on any socket error, or after the
idle timeout. Counters are accumulated per pair and posted to the reactor thread (at most once a
second and at close), so the reactor's stats never race with this thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wanfedtx.gateway.loopthread import LoopThread
from wanfedtx.gateway.stats import ClusterStats, TcpStats

log = Logger(namespace="wanfed.gateway.splice")

F_SETPIPE_SZ = 1031
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)
SHORT_READ = 64 * 1024


def splice_available() -> bool:
    """True where ``os.splice`` and ``epoll`` exist (Linux, Python >= 3.10)."""
    return hasattr(os, "splice") and hasattr(select, "epoll")


class PairOwner(Protocol):
    def splice_closed(self, idle: bool) -> None: ...


class Direction:
    __slots__ = (
        "dst",
        "eof",
        "finished",
        "in_pipe",
        "moved",
        "pending",
        "pipe_r",
        "pipe_w",
        "src",
        "want_out",
    )

    def __init__(self, src: int, dst: int, pending: bytes) -> None:
        self.src = src
        self.dst = dst
        self.pipe_r = self.pipe_w = -1  # created in the loop thread by open_pipe()
        self.in_pipe = 0
        self.pending = pending
        self.eof = False
        self.finished = False
        self.want_out = bool(pending)
        self.moved = 0  # bytes delivered to dst, not yet posted to the reactor

    def open_pipe(self, pipe_size: int) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, F_SETPIPE_SZ, pipe_size)
        except OSError:
            pass

    def pump(self) -> bool:
        """Move what can move now without blocking; return True if any byte moved.

        Raises OSError for socket errors (the caller closes the pair).
        """
        progress = False
        short = False
        for _ in range(8):  # bounded, for fairness between pairs
            if self.pending:
                try:
                    n = os.write(self.dst, self.pending)
                except OSError as e:
                    if e.errno in AGAIN:
                        self.want_out = True
                        return progress
                    raise
                self.pending = self.pending[n:]  # already counted by the reactor
                progress = True
                if self.pending:
                    self.want_out = True
                    return progress
            if self.in_pipe:
                try:
                    n = os.splice(self.pipe_r, self.dst, self.in_pipe, flags=SPLICE_FLAGS)
                except OSError as e:
                    if e.errno in AGAIN:
                        self.want_out = True
                        return progress
                    raise
                self.in_pipe -= n
                self.moved += n
                progress = True
                if self.in_pipe:
                    self.want_out = True
                    return progress
            self.want_out = False
            if self.eof:
                if not self.finished:
                    self.finished = True
                    try:
                        socket_shutdown_wr(self.dst)
                    except OSError:
                        pass
                return progress
            if short:
                # the last read was small, so the socket is most likely drained: skip the read
                # that would only say EAGAIN; level-triggered epoll reports anything left
                return progress
            try:
                n = os.splice(self.src, self.pipe_w, 1 << 20, flags=SPLICE_FLAGS)
            except OSError as e:
                if e.errno in AGAIN:
                    return progress
                raise
            if n == 0:
                self.eof = True
                continue
            self.in_pipe += n
            short = n < SHORT_READ
            progress = True
        # the fairness bound ended the loop: bytes may sit in the pipe with nothing left to read,
        # so ask for EPOLLOUT on the destination to flush them on the next turn
        if self.in_pipe or self.pending:
            self.want_out = True
        return progress

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


def socket_shutdown_wr(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_WR)
    finally:
        s.detach()


class _Pair:
    __slots__ = (
        "closed",
        "cluster",
        "down",
        "down_fd",
        "idle_since",
        "mask",
        "owner",
        "tcp",
        "up",
        "up_fd",
    )

    def __init__(
        self,
        down_fd: int,
        up_fd: int,
        first: bytes,
        owner: PairOwner,
        tcp: TcpStats,
        cluster: ClusterStats,
        now: float,
    ) -> None:
        self.down_fd = down_fd
        self.up_fd = up_fd
        self.down = Direction(down_fd, up_fd, first)  # downstream -> upstream
        self.up = Direction(up_fd, down_fd, b"")  # upstream -> downstream
        self.owner = owner
        self.tcp = tcp
        self.cluster = cluster
        self.idle_since = now
        self.closed = False
        self.mask: dict[int, int] = {down_fd: 0, up_fd: 0}

    def masks(self) -> tuple[int, int]:
        d, u = self.down, self.up
        down_mask = (0 if (d.eof or d.want_out) else EPOLLIN) | (EPOLLOUT if u.want_out else 0)
        up_mask = (0 if (u.eof or u.want_out) else EPOLLIN) | (EPOLLOUT if d.want_out else 0)
        return down_mask, up_mask


class SpliceRelay:
    """The relay thread. Methods other than the loop are called from the reactor thread."""

    def __init__(
        self,
        reactor: Any,
        idle_timeout: float | None = 3600.0,
        pipe_size: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not splice_available():
            raise RuntimeError(
                "splice(2) relay needs Linux and Python >= 3.10; use -data-path twisted"
            )
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.pipe_size = pipe_size
        self.clock = clock
        self._ep = select.epoll()
        self._loop = LoopThread(reactor, self._ep, "wanfed-gateway-splice")
        self._lock = threading.Lock()
        self._incoming: list[_Pair] = []
        self.pairs: dict[int, _Pair] = {}  # fd -> pair, loop thread only
        self.count = 0  # pairs open, updated in the reactor thread
        self.handoffs = 0  # pairs ever handed to this relay

    def start(self) -> None:
        self._loop.start(self._run)

    def add(
        self,
        down_fd: int,
        up_fd: int,
        first: bytes,
        owner: PairOwner,
        tcp: TcpStats,
        cluster: ClusterStats,
    ) -> None:
        pair = _Pair(down_fd, up_fd, first, owner, tcp, cluster, self.clock())
        self.count += 1
        self.handoffs += 1
        with self._lock:
            self._incoming.append(pair)
            wake = len(self._incoming) == 1  # one wake-up per batch: fewer GIL hand-overs
        if wake:
            self._loop.wake.wake(b"a")

    def stop(self) -> Deferred[None]:
        """Close every pair and end the thread; the Deferred fires in the reactor thread."""
        return self._loop.stop()

    # -- loop thread -----------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = self.clock()
        try:
            while not self._loop.stopping:
                events = self._ep.poll(1.0)
                for fd, ev in events:
                    if fd == self._loop.wake.fd:
                        self._accept_new()
                        continue
                    pair = self.pairs.get(fd)
                    if pair is None or pair.closed:
                        continue
                    if ev & select.EPOLLERR:
                        self._close(pair, idle=False)
                    elif not self._service(pair) and ev & select.EPOLLHUP:
                        self._close(pair, idle=False)
                now = self.clock()
                if now - last_tick >= 1.0:
                    last_tick = now
                    self._tick(now)
        except Exception:
            log.failure("gateway splice relay loop crashed")
        finally:
            for pair in list(self.pairs.values()):
                self._close(pair, idle=False)
            self._ep.close()
            self._loop.finished()

    def _accept_new(self) -> None:
        self._loop.wake.drain()
        with self._lock:
            new, self._incoming = self._incoming, []
        for pair in new:
            pair.down.open_pipe(self.pipe_size)
            pair.up.open_pipe(self.pipe_size)
            self.pairs[pair.down_fd] = pair
            self.pairs[pair.up_fd] = pair
            self._ep.register(pair.down_fd, 0)
            self._ep.register(pair.up_fd, 0)
            self._service(pair)

    def _service(self, pair: _Pair) -> bool:
        """Pump both directions; return True if bytes moved or the pair changed state."""
        try:
            moved = pair.down.pump()
            moved = pair.up.pump() or moved
        except OSError:
            self._close(pair, idle=False)
            return True
        if moved:
            pair.idle_since = self.clock()
        if pair.down.finished and pair.up.finished:
            self._close(pair, idle=False)
            return True
        dm, um = pair.masks()
        if dm != pair.mask[pair.down_fd]:
            self._ep.modify(pair.down_fd, dm)
            pair.mask[pair.down_fd] = dm
        if um != pair.mask[pair.up_fd]:
            self._ep.modify(pair.up_fd, um)
            pair.mask[pair.up_fd] = um
        return moved

    def _tick(self, now: float) -> None:
        seen: set[int] = set()
        for pair in list(self.pairs.values()):
            if id(pair) in seen or pair.closed:
                continue
            seen.add(id(pair))
            if self.idle_timeout is not None and now - pair.idle_since >= self.idle_timeout:
                self._close(pair, idle=True)
            else:
                self._post(pair, closed=False, idle=False)

    def _post(self, pair: _Pair, closed: bool, idle: bool) -> None:
        d, u = pair.down.moved, pair.up.moved
        pair.down.moved = pair.up.moved = 0
        if d or u or closed:
            self.reactor.callFromThread(self._account, pair, d, u, closed, idle)

    def _account(
        self, pair: _Pair, down_bytes: int, up_bytes: int, closed: bool, idle: bool
    ) -> None:
        pair.tcp.downstream_cx_rx_bytes_total += down_bytes
        pair.cluster.upstream_cx_tx_bytes_total += down_bytes
        pair.tcp.downstream_cx_tx_bytes_total += up_bytes
        pair.cluster.upstream_cx_rx_bytes_total += up_bytes
        if closed:
            self.count -= 1
            pair.owner.splice_closed(idle)

    def _close(self, pair: _Pair, idle: bool) -> None:
        if pair.closed:
            return
        pair.closed = True
        for fd in (pair.down_fd, pair.up_fd):
            self.pairs.pop(fd, None)
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        pair.down.close()
        pair.up.close()
        self._post(pair, closed=True, idle=idle)
