# -*- test-case-name: tests.integration.gateway.test_gateway_relay -*-
"""Host-name endpoints of the gateway's ``loop`` data path, resolved off the loop thread.

An endpoint given by name (not a numeric address) is looked up with ``getaddrinfo`` in a small
executor, created on first use, so the relay loop never blocks on DNS. Each answer (the first
address, or the ``OSError``) is queued under a lock with the connection and its deadline
generation, and the loop is woken through its wake pipe; the loop then takes the queue
(:meth:`Resolver.take`) and connects or fails over.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wanfedtx.gateway.loopsock import LoopConn
from wanfedtx.gateway.snapshot import Endpoint

Resolved = tuple[LoopConn, int, Endpoint, Any]  # connection, generation, endpoint, answer


class Resolver:
    """Lookups for one loop thread; answers wait in a queue until :meth:`take`."""

    def __init__(self, wake: Callable[[bytes], None]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._done: list[Resolved] = []
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, c: LoopConn, gen: int, ep: Endpoint) -> None:
        """Look ``ep`` up for ``c`` (at deadline generation ``gen``) in the executor."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="wanfed-gateway-dns")

        def work() -> None:
            try:
                info = socket.getaddrinfo(ep.address, ep.port, type=socket.SOCK_STREAM)
                result: Any = (info[0][0], info[0][4])
            except OSError as e:
                result = e
            with self._lock:
                self._done.append((c, gen, ep, result))
            self._wake(b"r")

        self._executor.submit(work)

    def take(self) -> list[Resolved]:
        """The answers that arrived since the last call (loop thread)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
