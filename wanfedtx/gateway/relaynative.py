# -*- test-case-name: tests.unit.gateway.test_gateway_relaynative -*-
"""The ``loop`` data path's compiled relay: relaying connections handed to C, and back.

Once a connection's core says ``Relay``, the Python loop (``loop.py``) gives both sockets to the
compiled :mod:`wanfedtx.gateway._splicerelay` (built from ``csrc/`` at install time),
which splices their bytes, forwards FINs and closes the pair without waking the interpreter:
a relayed connection then costs Python its accept, hello and connect, and one record when it
ends, instead of a Python turn per socket event. :class:`NativeRelay` is the Python half: it
owns the ``token -> connection`` map, replaces the loop's ``epoll.poll`` (the C side waits on
the same epoll set and returns only the events of sockets Python still owns), and turns each
finished pair's record into the events the connection's sans-IO core expects (bytes moved, the
FINs seen, then why it ended), so counters, logs and the close are the core's as on the Python
relay.

Byte counters of a long connection reach the core once a second (:meth:`NativeRelay.sweep`, from
the loop's one-second sweep) and when it ends; a finished pair's record waits at most ``HOLD``
seconds for the loop's next turn, so ``downstream_cx_active`` lags a close by up to that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from wanfedtx.gateway.conn import Abort, DownEof, Event, Idle, State, UpEof
from wanfedtx.gateway.errors import need
from wanfedtx.gateway.loopsock import LoopConn

try:
    from wanfedtx.gateway import _splicerelay  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler at install time)
    _splicerelay = None

HOLD = 0.05  # seconds a finished pair's record may wait for a Python turn
RELAY_CORES = ("auto", "c", "python")

_DOWN_EOF = DownEof()
_UP_EOF = UpEof()
_SOCKET_ERROR = Abort("socket error")
# why a pair ended, for a core not closed by the FINs (a clean end is both FINs, in the flags)
_ENDINGS: dict[int, Event] = {2: Abort("hang-up"), 3: Idle(), 4: Abort("gateway stopping")}


class _CRelay(Protocol):
    def add(self, token: int, down: int, up: int, mdown: int, mup: int, first: bytes) -> None: ...
    def poll(self, timeout: float) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]]: ...
    def take_moved(self) -> list[tuple[int, int, int]]: ...
    def close_all(self) -> list[tuple[int, ...]]: ...


def available() -> bool:
    """Whether the compiled relay was built and imports."""
    return _splicerelay is not None


def use_native(choice: str) -> bool:
    """Resolve ``-loop-relay``: ``auto`` means the compiled relay where it was built."""
    if choice not in RELAY_CORES:
        raise ValueError(f"unknown loop relay {choice!r}; use one of " + ", ".join(RELAY_CORES))
    if choice == "c" and not available():
        raise RuntimeError(
            "-loop-relay c: the compiled relay was not built (it needs a C compiler and the"
            " Python headers at install time); use -loop-relay python"
        )
    return choice == "c" or (choice == "auto" and available())


class NativeRelay:
    """The relaying connections of one loop thread, handed to the compiled relay."""

    def __init__(self, epfd: int, pipe_size: int, idle_timeout: float | None) -> None:
        if _splicerelay is None:
            raise RuntimeError("the compiled relay was not built")
        self._c: _CRelay = _splicerelay.Relay(epfd, pipe_size, idle_timeout or 0.0, HOLD)
        self._conns: dict[int, LoopConn] = {}
        self._next = 1
        self.poll = self._c.poll  # (timeout) -> (events for Python's sockets, finished)

    def hand_over(self, c: LoopConn, first: bytes, fds: dict[int, LoopConn]) -> bool:
        """Give ``c``'s two sockets to the compiled relay, which sends ``first`` upstream.

        Their descriptors leave ``fds`` and Python's socket objects (``detach``): from here on
        only the relay closes them, so no stale number can be closed twice. False if the relay
        refused them (out of memory); both are closed then and the caller aborts ``c``.
        """
        up = need(c.up, "upstream socket")
        token = self._next
        self._next += 1
        fds.pop(c.down_fd, None)
        fds.pop(c.up_fd, None)
        down_fd, up_fd = c.down.detach(), up.detach()
        c.down_fd = c.up_fd = -1
        c.token = token
        try:
            self._c.add(token, down_fd, up_fd, c.mask_down, c.mask_up, first)
        except (ValueError, MemoryError, OverflowError):  # refused: both are still ours
            for fd in (down_fd, up_fd):
                os.close(fd)
            return False
        self._conns[token] = c
        return True

    def finish(
        self, done: list[tuple[int, ...]], handle: Callable[[LoopConn, Event], None]
    ) -> None:
        """Tell each finished pair's core what happened, in the Python relay's order: the
        bytes, the FINs it saw (downstream's first), then why it ended if it is not over."""
        conns = self._conns
        for token, to_up, to_down, down_eof, up_eof, reason in done:
            c = conns.pop(token, None)
            if c is None:
                continue
            core = c.core
            if to_up or to_down:
                core.moved(to_up, to_down)
            if down_eof:
                handle(c, _DOWN_EOF)
            if up_eof and core.state is not State.CLOSED:
                handle(c, _UP_EOF)
            if core.state is not State.CLOSED:
                handle(c, _ENDINGS.get(reason, _SOCKET_ERROR))

    def sweep(self) -> None:
        """Post the bytes every relaying pair moved since the last sweep to its core."""
        conns = self._conns
        for token, to_up, to_down in self._c.take_moved():
            c = conns.get(token)
            if c is not None:
                c.core.moved(to_up, to_down)

    def close_all(self, handle: Callable[[LoopConn, Event], None]) -> None:
        """Close every pair (the loop is stopping) and tell their cores."""
        self.finish(self._c.close_all(), handle)


def native_relay(epfd: int, settings: Any) -> NativeRelay | None:
    """A :class:`NativeRelay` for a loop whose settings ask for the compiled relay, else None."""
    if not use_native(settings.loop_relay):
        return None
    return NativeRelay(epfd, settings.pipe_size, settings.idle_timeout)
