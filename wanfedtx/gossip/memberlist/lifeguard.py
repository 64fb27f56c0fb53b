# -*- test-case-name: tests.unit.gossip -*-
"""Lifeguard: local health awareness and the suspicion timer that shrinks with confirmations."""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# ------------------------------------------------------------------------------------------
# Suspicion and awareness


class Awareness:
    """Lifeguard local health: 0 is healthy; timeouts scale by (score + 1)."""

    def __init__(self, max_multiplier: int) -> None:
        self.max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)


class Suspicion:
    """A suspicion timer that shrinks from ``max`` toward ``min`` with independent confirmations."""

    def __init__(
        self,
        clock: IReactorTime,
        from_: str,
        k: int,
        min_t: float,
        max_t: float,
        fire: Callable[[int], None],
    ) -> None:
        self.clock = clock
        self.k = k
        self.min = min_t
        self.max = max_t
        self.n = 0
        self.confirmations = {from_}
        self.start = clock.seconds()
        self._fire = fire
        timeout = max_t if k >= 1 else min_t
        self.timer: IDelayedCall = clock.callLater(timeout, self._fired)

    def _fired(self) -> None:
        self._fire(self.n)

    def remaining(self) -> float:
        frac = math.log(self.n + 1.0) / math.log(self.k + 1.0)
        raw = self.max - frac * (self.max - self.min)
        timeout = math.floor(1000.0 * raw) / 1000.0
        timeout = max(timeout, self.min)
        return timeout - (self.clock.seconds() - self.start)

    def confirm(self, from_: str) -> bool:
        if self.n >= self.k or from_ in self.confirmations:
            return False
        self.confirmations.add(from_)
        self.n += 1
        left = self.remaining()
        if self.timer.active():
            if left > 0:
                self.timer.reset(left)
            else:
                self.timer.cancel()
                self.clock.callLater(0, self._fired)
        return True

    def cancel(self) -> None:
        if self.timer.active():
            self.timer.cancel()
