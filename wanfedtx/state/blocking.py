"""The blocking-query helper shared by every read endpoint.

``MinQueryIndex`` 0 means "answer now". Otherwise the query runs, and while its index is not above
``MinQueryIndex`` the helper waits for a watched channel to fire (then runs again) or for the
wait to expire (then runs once more and returns that answer). The wait defaults to 300 s, is
capped at 600 s and gets up to 1/16 of random jitter; the returned index is at least 1.

A parked query is one :class:`BlockingQuery` (a Deferred) subscribed to its watch channels plus
one timer, and it keeps no result while it waits: it is what 10,000 watchers of one key cost.
Give it a :class:`~wanfedtx.state.timers.TimerQueue` as the clock to share one reactor timer
among all parked queries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.state.watch import WatchSet

DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
JITTER_FRACTION = 16

T = TypeVar("T")
Query = Callable[[WatchSet | None], tuple[int, T]]


class Timer(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class TimerSource(Protocol):
    """What a blocking query needs of a clock (``IReactorTime`` or a ``TimerQueue``)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, call: Callable[[], object], /) -> Timer: ...


def query_timeout(wait: float | None, rng: random.Random) -> float:
    """The effective wait for a requested one (None or <= 0: the default), jitter included."""
    timeout = DEFAULT_QUERY_TIME if not wait or wait <= 0 else min(wait, MAX_QUERY_TIME)
    return timeout + rng.random() * (timeout / JITTER_FRACTION)


class BlockingQuery(Deferred[Any]):
    """One blocking query in flight: a Deferred that fires with ``(index, result)``, or with
    ``answer(index, result)`` when an ``answer`` function is given (it runs once, on the final
    result, and saves a callback per parked query).

    A Deferred itself, so that a parked query is one object (no canceller closure, no cycle
    left behind once it has fired). Cancelling it drops the watches and the timer.
    """

    def __init__(
        self,
        clock: TimerSource,
        rng: random.Random,
        min_index: int,
        wait: float | None,
        query: Query[T],
        answer: Callable[[int, T], Any] | None = None,
    ) -> None:
        super().__init__()
        self._query: Query[T] | None = query
        self._answer = answer
        self._min_index = min_index
        self._ws: WatchSet | None = None
        self._timer: Timer | None = None
        if self._run(last=min_index <= 0):
            return
        self._timer = clock.callLater(query_timeout(wait, rng), self._expired)

    def _run(self, last: bool = False) -> bool:
        """Run the query; True when the answer was delivered, False when parked again."""
        query = self._query
        if query is None:
            return True
        ws = None if last else WatchSet()
        try:
            index, result = query(ws)
        except Exception:
            if ws is not None:
                ws.close()
            self._deliver(None, Failure())  # type: ignore[no-untyped-call]
            return True
        index = max(index, 1)
        if last or index > self._min_index:
            if ws is not None:
                ws.close()
            answer = self._answer
            try:
                value = (index, result) if answer is None else answer(index, result)
            except Exception:
                self._deliver(None, Failure())  # type: ignore[no-untyped-call]
                return True
            self._deliver(value, None)
            return True
        assert ws is not None
        self._ws = ws
        ws.subscribe(self._changed)
        return self._query is None

    def _changed(self) -> None:
        self._ws = None
        self._run()

    def _expired(self) -> None:
        self._timer = None
        self._run(last=True)

    def _stop(self) -> None:
        """Drop the query, the watches and the timer."""
        self._query = None
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _deliver(self, value: Any, failure: Failure | None) -> None:
        self._stop()
        if failure is not None:
            self.errback(failure)
        else:
            self.callback(value)

    def cancel(self) -> None:
        if not self.called:
            self._stop()
        super().cancel()


def blocking_query(
    clock: TimerSource,
    rng: random.Random,
    min_index: int,
    wait: float | None,
    query: Query[T],
) -> Deferred[tuple[int, T]]:
    """Run ``query`` until its index passes ``min_index`` or the wait expires."""
    return BlockingQuery(clock, rng, min_index, wait, query)
