# -*- test-case-name: tests.unit.rpc.test_rpc_hold_stop -*-
"""The pauses of requests held for a leader (``performance.rpc_hold_timeout``), which a shutdown
ends at once.

A server's endpoints and a client agent's RPC retry a request that met "no leader" (or a dead
leader) with jittered pauses for up to the hold timeout. When the agent stops, Consul's hold
loop leaves through its shutdown channel and the request fails with the error it was held on;
:meth:`Holds.stop` does the same here, so a stop never waits out a hold (anti-entropy's stop
waits for its sync, and that sync may be a held request: 7 s on every agent stop before an
election had finished).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater


class Holds:
    """The pauses now under way; :meth:`stop` ends them and every later one at once."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.stopped = False
        self._pending: set[Deferred[None]] = set()

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once, or as soon as :meth:`stop` runs) when the caller
        should give up with the error it was holding on."""
        if self.stopped:
            return False
        d: Deferred[None] = deferLater(self.clock, seconds, lambda: None)
        self._pending.add(d)
        try:
            await d
        except CancelledError:
            if self.stopped:
                return False
            raise  # the request itself was cancelled
        finally:
            self._pending.discard(d)
        return not self.stopped

    def stop(self) -> None:
        self.stopped = True
        for d in list(self._pending):
            d.cancel()
