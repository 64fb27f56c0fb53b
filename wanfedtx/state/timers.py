# -*- test-case-name: tests.unit.state.test_state_blocking_timers -*-
"""Many long timers on one reactor timer: the deadlines of parked blocking queries.

Every blocking query has a deadline (300 s by default, up to 10 minutes). With tens of thousands
of them parked, a reactor ``DelayedCall`` each costs memory and reactor heap work for timers that
are almost always cancelled (the data changes first). :class:`TimerQueue` keeps small slotted
timer objects in its own heap and arms a single reactor call for the earliest one. Cancelled
timers are dropped lazily, and the heap is rebuilt when they outnumber the live ones.

It offers ``seconds()`` and ``callLater()`` like ``IReactorTime``, so code that takes a clock can
be given one.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

COMPACT_MIN = 256


class QueuedTimer:
    """One timer of a :class:`TimerQueue`; ``cancel()`` and ``active()`` as a DelayedCall's."""

    __slots__ = ("_queue", "_seq", "call", "when")

    def __init__(
        self, queue: TimerQueue, when: float, seq: int, call: Callable[[], object] | None
    ) -> None:
        self._queue = queue
        self.when = when
        self._seq = seq
        self.call = call

    def __lt__(self, other: QueuedTimer) -> bool:
        return (self.when, self._seq) < (other.when, other._seq)

    def active(self) -> bool:
        return self.call is not None

    def cancel(self) -> None:
        if self.call is None:
            raise RuntimeError("timer already called or cancelled")
        self.call = None
        self._queue._cancelled()


class TimerQueue:
    """Timers in a heap, served by one ``callLater`` on ``clock`` for the earliest."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[QueuedTimer] = []
        self._seq = itertools.count()
        self._armed: IDelayedCall | None = None
        self._armed_for = 0.0
        self._dead = 0

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, call: Callable[[], object]) -> QueuedTimer:
        """Run ``call()`` after ``delay`` seconds (no arguments: bind them beforehand)."""
        timer = QueuedTimer(self, self._clock.seconds() + max(delay, 0.0), next(self._seq), call)
        heapq.heappush(self._heap, timer)
        if self._heap[0] is timer:
            self._arm()
        return timer

    def __len__(self) -> int:
        """Live (not yet called or cancelled) timers."""
        return len(self._heap) - self._dead

    def _cancelled(self) -> None:
        self._dead += 1
        if self._dead == len(self._heap):  # nothing live: drop everything, disarm
            self._heap = []
            self._dead = 0
            self._arm()
        elif self._dead >= COMPACT_MIN and self._dead * 2 > len(self._heap):
            self._heap = [t for t in self._heap if t.call is not None]
            heapq.heapify(self._heap)
            self._dead = 0
            self._arm()

    def _arm(self) -> None:
        heap = self._heap
        while heap and heap[0].call is None:
            heapq.heappop(heap)
            self._dead -= 1
        if not heap:
            if self._armed is not None and self._armed.active():
                self._armed.cancel()
            self._armed = None
            return
        when = heap[0].when
        if self._armed is not None and self._armed.active():
            if self._armed_for <= when:
                return  # already armed early enough; it re-arms when it runs
            self._armed.cancel()
        self._armed_for = when
        self._armed = self._clock.callLater(max(when - self._clock.seconds(), 0.0), self._run)

    def _run(self) -> None:
        self._armed = None
        now = self._clock.seconds()
        heap = self._heap
        while heap and heap[0].when <= now:
            timer = heapq.heappop(heap)
            call = timer.call
            if call is None:
                self._dead -= 1
                continue
            timer.call = None
            call()
        self._arm()
