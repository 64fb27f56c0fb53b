# -*- test-case-name: tests.unit.rpc.test_rpc_frame_budget,tests.unit.test_framing -*-
"""A shared byte budget for frames that are still arriving, across many connections.

A peer can declare a large frame and then send it slowly, over many connections at once. Each
connection alone stays under the per-frame cap, but together they could hold gigabytes. Decoders
``reserve`` the bytes of their unfinished frame in one ``FrameBudget`` shared by every inbound
connection of a port, and ``release`` them when the frame completes or the connection closes; a
reservation that does not fit fails, and the caller closes that connection.
"""

from __future__ import annotations


class FrameBudget:
    """Bytes held in partially received frames across every connection that shares it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def reserve(self, n: int) -> bool:
        """Take ``n`` more bytes; False (and nothing taken) if that would pass the limit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)


class HeldBytes:
    """One decoder's reservation in a (possibly absent) ``FrameBudget``."""

    def __init__(self, budget: FrameBudget | None) -> None:
        self.budget = budget
        self.held = 0

    def hold(self, want: int) -> bool:
        """Make the reservation exactly ``want`` bytes; False if the budget cannot grow to it."""
        budget = self.budget
        if budget is None:
            return True
        if want > self.held:
            if not budget.reserve(want - self.held):
                return False
        elif want < self.held:
            budget.release(self.held - want)
        self.held = want
        return True

    def release_all(self) -> None:
        if self.budget is not None and self.held:
            self.budget.release(self.held)
        self.held = 0
