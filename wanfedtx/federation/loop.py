# -*- test-case-name: tests.unit.federation.test_federation_loop -*-
"""Leader-routine loops: a token-bucket limiter and the reference's two retry disciplines.

* :class:`RetryLoop` is ``retryLoopBackoff`` (used by anti-entropy and the gateway locator):
  every iteration first waits on a limiter of 0.2 runs/s with a burst of 5; after an error it
  sleeps ``2**n`` seconds, ``n`` growing before each run while ``2**n < 256`` and reset by a
  success (so 2 s, 4 s, ... 256 s).
* :func:`retry_wait` is the replicator's ``RetryWaiter``: the n-th consecutive failure waits
  ``2**(n-1)`` seconds plus up to 10 % jitter, capped at 120 s.

A loop is a ``twisted.application`` Service: ``startService`` runs it, ``stopService`` cancels
whatever it is waiting on (a limiter or backoff sleep, a blocking query, an RPC) and returns a
Deferred that fires once it has stopped. Time and randomness are injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.services import Service

LOOP_RATE = 0.2
LOOP_BURST = 5
MAX_RETRY_BACKOFF = 256.0

REPLICATION_MAX_WAIT = 120.0
REPLICATION_JITTER_PERCENT = 10

log = Logger(namespace="federation")


class RateLimiter:
    """A token bucket (Go's ``rate.Limiter``): ``rate`` tokens per second, ``burst`` at most."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = clock.seconds()

    def reserve(self) -> float:
        """Take one token; the delay (seconds) the caller must wait before using it."""
        now = self.clock.seconds()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def wait(self) -> Deferred[None]:
        delay = self.reserve()
        if delay <= 0:
            return succeed(None)
        return deferLater(self.clock, delay, lambda: None)


def sleep(clock: IReactorTime, seconds: float) -> Deferred[None]:
    return deferLater(clock, seconds, lambda: None)


def retry_wait(
    failures: int,
    rng: random.Random,
    max_wait: float = REPLICATION_MAX_WAIT,
    jitter_percent: int = REPLICATION_JITTER_PERCENT,
) -> float:
    """The replicator's wait after ``failures`` consecutive failures (``failures >= 1``)."""
    wait = float(2 ** min(failures - 1, 31)) if failures > 0 else 0.0
    wait += rng.random() * wait * jitter_percent / 100
    return min(wait, max_wait)


class LoopService(Service):
    """A coroutine loop run while the service runs; stopping cancels what it waits on."""

    def __init__(self, name: str) -> None:
        self.setName(name)
        self._task: Deferred[None] | None = None
        self._nap: tuple[Deferred[None], list[Any]] | None = None

    def backoff(self, clock: IReactorTime, seconds: float) -> Deferred[None]:
        """Sleep ``seconds`` after an error, unless :meth:`wake` ends the sleep sooner."""
        call: list[Any] = []

        def cancel(_: Deferred[None]) -> None:
            if call and call[0].active():
                call[0].cancel()

        d: Deferred[None] = Deferred(cancel)
        call.append(clock.callLater(seconds, self._wake_nap, d, call))
        self._nap = (d, call)
        return d

    def _wake_nap(self, d: Deferred[None], call: list[Any]) -> None:
        if self._nap is not None and self._nap[0] is d:
            self._nap = None
        if call and call[0].active():
            call[0].cancel()
        if not d.called:
            d.callback(None)

    def wake(self) -> None:
        """Retry now if the loop is backing off after an error (a path may have opened)."""
        if self._nap is not None:
            d, call = self._nap
            self._wake_nap(d, call)

    def startService(self) -> None:
        super().startService()
        self._task = Deferred.fromCoroutine(self._guarded())

    async def _guarded(self) -> None:
        try:
            await self.run()
        except CancelledError:
            return

    async def run(self) -> None:
        raise NotImplementedError

    def stopService(self) -> Deferred[None]:
        super().stopService()
        task, self._task = self._task, None
        if task is None or task.called:
            return succeed(None)
        task.cancel()
        return task.addErrback(_ignore_cancel)


def _ignore_cancel(failure: Failure) -> None:
    failure.trap(CancelledError)


class RetryLoop(LoopService):
    """``retryLoopBackoff``: ``run_once(last_index) -> index`` forever, limited and backed off.

    Errors go to ``on_error`` (the loop keeps its last index and retries after the backoff).
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        run_once: Callable[[int], Deferred[int]],
        on_error: Callable[[BaseException], Any],
        rate: float = LOOP_RATE,
        burst: int = LOOP_BURST,
        max_backoff: float = MAX_RETRY_BACKOFF,
    ) -> None:
        super().__init__(name)
        self.clock = clock
        self.run_once = run_once
        self.on_error = on_error
        self.rate = rate
        self.burst = burst
        self.max_backoff = max_backoff
        self.last_index = 0
        self.runs = 0

    async def run(self) -> None:
        limiter = RateLimiter(self.clock, self.rate, self.burst)
        failed = 0
        while True:
            await limiter.wait()
            if 2**failed < self.max_backoff:
                failed += 1
            retry_time = float(2**failed)
            self.runs += 1
            try:
                self.last_index = await self.run_once(self.last_index)
            except CancelledError:
                raise
            except Exception as exc:
                if not self.running:
                    return  # stopped while this round was under way: its error is moot
                self.on_error(exc)
                await self.backoff(self.clock, retry_time)
                continue
            failed = 0
