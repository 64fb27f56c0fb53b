# -*- test-case-name: tests.unit.gateway.test_gateway_pump_unit -*-
"""The ``splice(2)`` pump of the ``loop`` data path: one :class:`Direction` per relayed direction.

Bytes go socket -> pipe -> socket inside the kernel, never through Python objects. Backpressure is
the pipe: a direction whose destination is full stops reading its source until ``EPOLLOUT``. A FIN
is forwarded as ``shutdown(SHUT_WR)`` once the pipe is drained. Linux only
(:func:`splice_available`).

Pipes are reused: a :class:`PipePool` hands out pipes already sized to the relay's pipe size
and takes back the ones a finished direction left empty, so a new connection costs no
``pipe2``/``fcntl``/``close`` calls and no pipe ring allocation in the kernel.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import select
import socket

F_SETPIPE_SZ = 1031
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)
SHORT_READ = 64 * 1024
_FAIRNESS = range(8)  # rounds per pump call


def splice_available() -> bool:
    """True where ``os.splice`` and ``epoll`` exist (Linux, Python >= 3.10)."""
    return hasattr(os, "splice") and hasattr(select, "epoll")


class PipePool:
    """Sized, empty pipes for the :class:`Direction` pumps of one relay thread (not thread-safe).

    At most ``keep`` idle pipes are kept (each holds two descriptors, and for an unprivileged
    user its capacity counts toward /proc/sys/fs/pipe-user-pages-soft); more are closed.
    """

    def __init__(self, pipe_size: int, keep: int = 32) -> None:
        self.pipe_size = pipe_size
        self.keep = keep
        self._idle: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        """An empty pipe ``(read_fd, write_fd)``, non-blocking, sized where the kernel allows."""
        if self._idle:
            return self._idle.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, self.pipe_size)
        except OSError:
            pass
        return r, w

    def put(self, r: int, w: int) -> None:
        """Take back a pipe known to be empty; close it if the pool is full."""
        if len(self._idle) < self.keep:
            self._idle.append((r, w))
        else:
            _close_fds(r, w)

    def close(self) -> None:
        for r, w in self._idle:
            _close_fds(r, w)
        self._idle.clear()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        if fd < 0:
            continue
        try:
            os.close(fd)
        except OSError:
            pass


class Direction:
    __slots__ = (
        "broken",
        "dst",
        "dst_sock",
        "eof",
        "finished",
        "in_pipe",
        "moved",
        "other",
        "pending",
        "pipe_r",
        "pipe_w",
        "src",
        "want_out",
    )

    def __init__(
        self, src: int, dst: int, pending: bytes, dst_sock: _socket.socket | None = None
    ) -> None:
        """``dst_sock``: the socket object of ``dst``, used for the FIN's ``shutdown`` (without
        it a temporary socket object is made, which costs three syscalls)."""
        self.src = src
        self.dst = dst
        self.dst_sock = dst_sock
        self.broken = False  # a syscall failed: the pipe's content is unknown, never reuse it
        self.pipe_r = self.pipe_w = -1  # set in the loop thread: open_pipe() or a pool's pipe
        self.in_pipe = 0
        self.pending = pending
        self.eof = False
        self.finished = False
        self.want_out = bool(pending)
        self.moved = 0  # bytes delivered to dst, not yet posted to the reactor
        self.other: Direction | None = None  # the opposite direction of the same pair

    def open_pipe(self, pipe_size: int) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, F_SETPIPE_SZ, pipe_size)
        except OSError:
            pass

    def flush_pending(self) -> None:
        """Write the pending bytes without reading (``want_out`` if some are left).

        Raises OSError for socket errors (the caller closes the pair).
        """
        if not self.pending:
            return
        try:
            n = os.write(self.dst, self.pending)
        except OSError as e:
            if e.errno in AGAIN:
                self.want_out = True
                return
            self.broken = True
            raise
        self.pending = self.pending[n:]
        self.want_out = bool(self.pending)

    def pump(self) -> bool:
        """Move what can move now without blocking; return True if any byte moved.

        Raises OSError for socket errors (the caller closes the pair); the pipe is then
        ``broken`` and never goes back to a pool. (One method, not a wrapper around a loop:
        this runs several times per relayed connection.)
        """
        try:
            progress = False
            short = False
            for _ in _FAIRNESS:  # bounded, for fairness between pairs
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
                        self._finish()
                    return progress
                if short:
                    # the last read was small, so the socket is most likely drained: skip the
                    # read that would only say EAGAIN; level-triggered epoll reports the rest
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
            # the fairness bound ended the loop: bytes may sit in the pipe with nothing left to
            # read, so ask for EPOLLOUT on the destination to flush them on the next turn; or
            # the last round read the end of the stream (the pipe is empty): forward it now
            if self.in_pipe or self.pending:
                self.want_out = True
            elif self.eof and not self.finished:
                self._finish()
            return progress
        except OSError:
            self.broken = True
            raise

    def _finish(self) -> None:
        """The source has ended and the pipe is empty: forward the FIN. Once both directions
        are over the pair is closed next, and the close sends this FIN (every byte either way
        has been read: no reset)."""
        self.finished = True
        other = self.other
        if other is None or not other.finished:
            try:
                if self.dst_sock is not None:
                    self.dst_sock.shutdown(socket.SHUT_WR)
                else:
                    socket_shutdown_wr(self.dst)
            except OSError:
                pass

    def close(self, pool: PipePool | None = None) -> None:
        """Release the pipe: back to ``pool`` if it is known to be empty, else closed; and
        unlink the pair, whose two ``other`` references are a cycle: left in place, a closed
        pair (and the sockets it holds) waits for the cyclic collector, which in a gateway run
        with ``tune_gc``'s thresholds may not come for hours (an RSS slope in the soak)."""
        self.other = None
        r, w = self.pipe_r, self.pipe_w
        self.pipe_r = self.pipe_w = -1
        if r < 0:
            return
        if pool is not None and not self.broken and self.in_pipe == 0:
            pool.put(r, w)
        else:
            _close_fds(r, w)


def socket_shutdown_wr(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_WR)
    finally:
        s.detach()
