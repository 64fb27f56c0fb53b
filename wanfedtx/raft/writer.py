# -*- test-case-name: tests.unit.raft.test_raft_write_path,tests.unit.raft.test_raft_service -*-
"""The raft service's writer thread: runs one write batch at a time off the reactor thread.

``submit(batch)`` hands a batch to the thread through a ``queue.SimpleQueue`` and returns a
Deferred fired on the reactor thread (``callFromThread``) once the write function returned (with
its failure if it raised). It replaces a one-thread ``ThreadPool`` + ``deferToThreadPool``: the
same two hand-offs per batch, without the pool's coordinator, worker and context layers that
ran on the reactor thread for every batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

T = TypeVar("T")


class WriterThread(Generic[T]):
    """One daemon thread calling ``write(batch)`` for each submitted batch, in order."""

    def __init__(self, reactor: IReactorFromThreads, write: Callable[[T], None],
                 name: str) -> None:
        self._call = reactor.callFromThread
        self._write = write
        self._q: queue.SimpleQueue[tuple[T, Deferred[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: T) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._q.put((batch, d))
        return d

    def stop(self) -> None:
        """Let the thread finish what was submitted, then end it (waits for it)."""
        self._q.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch, d = item
            try:
                self._write(batch)
            except BaseException:
                self._call(d.errback, Failure())
            else:
                self._call(d.callback, None)
