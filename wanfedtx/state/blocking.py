# -*- test-case-name: tests.unit.state.test_state_blocking_timers -*-
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
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.state.errors import StateError
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
            self._deliver(None, Failure())
            return True
        index = max(index, 1)
        if last or index > self._min_index:
            if ws is not None:
                ws.close()
            answer = self._answer
            try:
                value = (index, result) if answer is None else answer(index, result)
            except Exception:
                self._deliver(None, Failure())
                return True
            self._deliver(value, None)
            return True
        if ws is None:  # ``last`` always delivers above
            raise StateError("blocking query: no watch set for a query that must wait")
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


class WaitGroups:
    """Blocking queries for the same data at the same index share one watch and one answer.

    Thousands of clients often wait on one key. A group runs the query once, parks on its watch
    channels, and when they fire runs it once more and hands the same answer to every member.
    A request joining a parked group runs no query at all: the group's watches have not fired,
    so its data has not changed since it last looked. Each member keeps its own deadline; a
    member whose wait expires leaves and answers itself with the current data.

    ``key`` names the query (its method and every argument that shapes the answer); two calls
    with equal keys must be interchangeable, ``query`` and ``answer`` included.
    """

    def __init__(self, clock: TimerSource, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self._groups: dict[Hashable, _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def wait(
        self,
        key: Hashable,
        min_index: int,
        wait: float | None,
        query: Query[T],
        answer: Callable[[int, T], Any],
    ) -> Deferred[Any]:
        if min_index <= 0:
            return BlockingQuery(self.clock, self.rng, min_index, wait, query, answer)
        group_key = (key, min_index)
        group = self._groups.get(group_key)
        if group is None:
            group = _Group(self, group_key, min_index, query, answer)
            answered = group.run()
            if answered is not None:
                return answered
            self._groups[group_key] = group
        return group.join(query_timeout(wait, self.rng))

    def _drop(self, group: _Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]


class _Group:
    """One shared parked query and its members."""

    __slots__ = ("_answer", "_min_index", "_owner", "_query", "_ws", "key", "members")

    def __init__(
        self,
        owner: WaitGroups,
        key: Hashable,
        min_index: int,
        query: Query[Any],
        answer: Callable[[int, Any], Any],
    ) -> None:
        self._owner = owner
        self.key = key
        self._min_index = min_index
        self._query = query
        self._answer = answer
        self._ws: WatchSet | None = None
        self.members: dict[_Member, None] = {}

    def run(self) -> Deferred[Any] | None:
        """Run the query: a fired Deferred when it has an answer, None when parked."""
        ws = WatchSet()
        try:
            index, result = self._query(ws)
            index = max(index, 1)
            if index <= self._min_index:
                self._ws = ws
                ws.subscribe(self._changed)
                if self._ws is not ws:  # a channel fired while subscribing: look again
                    return self.run()
                return None
            ws.close()
            value = self._answer(index, result)
        except Exception:
            ws.close()
            d: Deferred[Any] = Deferred()
            d.errback(Failure())
            return d
        d = Deferred()
        d.callback(value)
        return d

    def join(self, timeout: float) -> _Member:
        member = _Member(self)
        self.members[member] = None
        member.timer = self._owner.clock.callLater(timeout, member.expire)
        return member

    def leave(self, member: _Member) -> None:
        self.members.pop(member, None)
        if not self.members:
            self.close()

    def close(self) -> None:
        self._owner._drop(self)
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def run_last(self) -> Any:
        """The current answer, without watching (for a member whose wait expired)."""
        index, result = self._query(None)
        return self._answer(max(index, 1), result)

    def _changed(self) -> None:
        self._ws = None
        if not self.members:
            self.close()
            return
        answered = self.run()
        if answered is None:
            return  # still at or below the index: parked again
        self.close()
        members, self.members = self.members, {}
        answered.addBoth(self._fan_out, members)

    @staticmethod
    def _fan_out(value: Any, members: dict[_Member, None]) -> None:
        for member in members:
            member.resolve(value)


class _Member(Deferred[Any]):
    """One caller waiting in a :class:`_Group`: a Deferred with its own deadline."""

    def __init__(self, group: _Group) -> None:
        super().__init__()
        self.group: _Group | None = group
        self.timer: Timer | None = None

    def resolve(self, value: Any) -> None:
        self._stop()
        if self.called:
            return
        if isinstance(value, Failure):
            self.errback(value)
        else:
            self.callback(value)

    def expire(self) -> None:
        self.timer = None
        group = self.group
        if group is None or self.called:
            return
        self.group = None
        group.leave(self)
        try:
            value = group.run_last()
        except Exception:
            self.errback(Failure())
            return
        self.callback(value)

    def _stop(self) -> None:
        self.group = None
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def cancel(self) -> None:
        if not self.called:
            group = self.group
            self._stop()
            if group is not None:
                group.leave(self)
        super().cancel()
