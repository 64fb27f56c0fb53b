# -*- test-case-name: tests.unit.gateway.test_gateway_loopthread -*-
"""The thread, self-pipe and stop hand-shake shared by the gateway's epoll relay threads.

The ``loop.py`` relay threads (one per worker) register the wake pipe's read end in their
epoll set; other threads write a byte to make ``poll`` return, and the loop thread drains the pipe
before it looks at the work handed over under its lock. ``LoopThread`` runs the loop function in a
daemon thread and turns a stop request into a Deferred that fires in the reactor thread once the
loop has closed its sockets.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads


class WakePipe:
    """A non-blocking pipe whose read end sits in an epoll set."""

    def __init__(self, ep: select.epoll) -> None:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        ep.register(self.fd, select.EPOLLIN)
        # ``wake`` (reactor thread) and ``close`` (loop thread) race at shutdown: without the
        # lock a wake after close would write to a closed descriptor, or, once the number is
        # reused, into someone else's socket.
        self._lock = threading.Lock()
        self.closed = False

    def wake(self, tag: bytes) -> None:
        """Make the epoll thread's ``poll`` return (any thread); a no-op once closed."""
        with self._lock:
            if self.closed:
                return
            try:
                os.write(self._w, tag)
            except BlockingIOError:
                pass  # the pipe is full: the loop has wake-ups pending already

    def drain(self) -> None:
        """Read every pending wake-up byte (loop thread)."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for fd in (self.fd, self._w):
                os.close(fd)


class LoopThread:
    """One epoll loop thread: start it, ask it to stop, learn (in the reactor) that it ended."""

    def __init__(self, reactor: IReactorFromThreads, ep: select.epoll, name: str) -> None:
        self.reactor = reactor
        self.name = name
        self.wake = WakePipe(ep)
        self.stopping = False  # read by the loop thread: leave the loop
        self._stopped: Deferred[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self, run: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> Deferred[None]:
        """Ask the loop to end; the Deferred fires in the reactor thread once it has."""
        d: Deferred[None] = Deferred()
        if self._thread is None or not self._thread.is_alive():
            d.callback(None)
            return d
        self._stopped = d
        self.stopping = True
        self.wake.wake(b"s")
        return d

    def finished(self) -> None:
        """Called by the loop thread last: close the wake pipe and fire the stop Deferred."""
        self.wake.close()
        if self._stopped is not None:
            self.reactor.callFromThread(self._stopped.callback, None)
