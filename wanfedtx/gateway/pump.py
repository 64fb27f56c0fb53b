# -*- test-case-name: tests.unit.gateway.test_gateway_pump_unit -*-
"""The ``splice(2)`` pump of the ``loop`` data path: one :class:`Direction` per relayed direction.

Bytes go socket -> pipe -> socket inside the kernel, never through Python objects. Backpressure is
the pipe: a direction whose destination is full stops reading its source until ``EPOLLOUT``. A FIN
is forwarded as ``shutdown(SHUT_WR)`` once the pipe is drained. Linux only
(:func:`splice_available`).
"""

from __future__ import annotations

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


def splice_available() -> bool:
    """True where ``os.splice`` and ``epoll`` exist (Linux, Python >= 3.10)."""
    return hasattr(os, "splice") and hasattr(select, "epoll")


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
