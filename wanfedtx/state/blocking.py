"""The blocking-query helper shared by every read endpoint.

``MinQueryIndex`` 0 means "answer now". Otherwise the query runs, and while its index is not above
``MinQueryIndex`` the helper waits for a watched channel to fire (then runs again) or for the
wait to expire (then returns the last answer). The wait defaults to 300 s, is capped at 600 s and
gets up to 1/16 of random jitter; the returned index is at least 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from wanfedtx.state.watch import WatchSet

DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
JITTER_FRACTION = 16

T = TypeVar("T")
Query = Callable[[WatchSet], tuple[int, T]]


def query_timeout(wait: float | None, rng: random.Random) -> float:
    """The effective wait for a requested one (None or <= 0: the default), jitter included."""
    timeout = DEFAULT_QUERY_TIME if not wait or wait <= 0 else min(wait, MAX_QUERY_TIME)
    return timeout + rng.random() * (timeout / JITTER_FRACTION)


def blocking_query(
    clock: IReactorTime,
    rng: random.Random,
    min_index: int,
    wait: float | None,
    query: Query[T],
) -> Deferred[tuple[int, T]]:
    """Run ``query`` until its index passes ``min_index`` or the wait expires."""
    return Deferred.fromCoroutine(run_blocking_query(clock, rng, min_index, wait, query))


async def run_blocking_query(
    clock: IReactorTime,
    rng: random.Random,
    min_index: int,
    wait: float | None,
    query: Query[T],
) -> tuple[int, T]:
    """:func:`blocking_query` as a coroutine (cheaper for callers that are coroutines).

    Cancelling the caller cancels the wait and drops the watches.
    """
    deadline = None
    while True:
        ws = WatchSet()
        index, result = query(ws)
        index = max(index, 1)
        if min_index <= 0 or index > min_index:
            ws.close()
            return index, result
        if deadline is None:
            deadline = clock.seconds() + query_timeout(wait, rng)
        remaining = deadline - clock.seconds()
        if remaining <= 0:
            ws.close()
            return index, result
        if not await ws.wait(clock, remaining):
            return index, result
