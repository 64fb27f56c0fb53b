# -*- test-case-name: tests.unit.rpc.test_rpc_deadlines -*-
"""Deadlines of in-flight RPC calls, kept with one reactor timer instead of one per call.

A forwarded call must end within its deadline (``wanfedtx.rpc.forward.call_deadline``). A
reactor timer per call costs a ``DelayedCall``, its insertion into the reactor's heap and its
cancellation, on every forwarded read and write. Here the calls wait in one first-in-first-out
queue per timeout value (calls with the same timeout expire in the order they started, so the
head of each queue is its earliest deadline), and one timer is armed for the earliest head.

A call that ends is only marked; marked calls leave a queue when they reach its head (at the
next call with that timeout, or when the timer fires). When no call is waiting any more the
timer is cancelled and the queues emptied, so an idle pool holds no timer and no entries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: deadlines this close after the timer's time count as reached (float rounding)
SLACK = 1e-9


class Deadline:
    """One call's deadline: ``on_expire(*args)`` runs if it is reached before ``settle``."""

    __slots__ = ("args", "at", "done", "on_expire")

    def __init__(self, at: float, on_expire: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.at = at
        self.on_expire = on_expire
        self.args = args
        self.done = False


class Deadlines:
    """The deadlines of one pool's calls, on ``clock``."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._queues: dict[float, deque[Deadline]] = {}
        self._waiting = 0
        self._timer: IDelayedCall | None = None

    @property
    def waiting(self) -> int:
        """Calls with a deadline that neither ended nor expired."""
        return self._waiting

    def add(self, timeout: float, on_expire: Callable[..., None], *args: Any) -> Deadline:
        """Start a deadline ``timeout`` seconds from now."""
        entry = Deadline(self._clock.seconds() + timeout, on_expire, args)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        else:
            while queue and queue[0].done:
                queue.popleft()
        queue.append(entry)
        self._waiting += 1
        timer = self._timer
        if timer is None:
            self._timer = self._clock.callLater(timeout, self._fire)
        elif entry.at < timer.getTime():
            timer.reset(timeout)
        return entry

    def settle(self, entry: Deadline) -> None:
        """The call ended (answered, failed or cancelled): its deadline no longer applies."""
        if entry.done:
            return
        entry.done = True
        self._waiting -= 1
        if self._waiting == 0:
            self.clear()

    def clear(self) -> None:
        """Forget every deadline without running any (the pool stops)."""
        for queue in self._queues.values():
            for entry in queue:
                entry.done = True
        self._queues.clear()
        self._waiting = 0
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        expired: list[Deadline] = []
        earliest: float | None = None
        for timeout, queue in list(self._queues.items()):
            while queue and (queue[0].done or queue[0].at <= now + SLACK):
                entry = queue.popleft()
                if not entry.done:
                    entry.done = True
                    self._waiting -= 1
                    expired.append(entry)
            if queue:
                head = queue[0].at
                earliest = head if earliest is None else min(earliest, head)
            else:
                del self._queues[timeout]
        if earliest is not None:
            self._timer = self._clock.callLater(max(0.0, earliest - now), self._fire)
        for entry in expired:
            entry.on_expire(*entry.args)
