# -*- test-case-name: tests.unit.fsm.test_fsm_tombstone_reaper -*-
"""Garbage collection of KV tombstones (the reference's tombstone GC), run by every server.

Deleting KV entries leaves tombstones (``wanfedtx.state.kvs``) so that a blocking prefix
listing sees a higher index after a delete. Nothing may keep them forever, or every delete
grows the state store, its snapshots and the servers' memory for good (the fault suite's soak
found 20,000 tombstones beside 1,900 live keys after 12 minutes). Every ``granularity``
seconds (30 s) each server's reaper notes the tombstone table's highest index; once a noted
index is older than ``ttl`` (15 minutes, the reference's tombstone TTL), the reaper of the
leader applies a ``Tombstone`` reap command with that index through raft, so every server
forgets the tombstones at or below it. Followers note too (the reference notes on the leader
only), so a new leader does not wait another full TTL: with leaders changing every few minutes
tombstones would otherwise never be reaped.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm import commands
from wanfedtx.fsm.commands import TOMBSTONE_REAP, MessageType
from wanfedtx.services import Service
from wanfedtx.state.kvs import TOMBSTONES

log = Logger(namespace="agent.server.leader")

TOMBSTONE_TTL = 15 * 60.0
TOMBSTONE_GRANULARITY = 30.0


class TombstoneReaper(Service):
    """Reaps tombstones older than ``ttl`` (see module) while this server leads."""

    def __init__(
        self,
        endpoints: Endpoints,
        clock: IReactorTime,
        ttl: float = TOMBSTONE_TTL,
        granularity: float = TOMBSTONE_GRANULARITY,
    ) -> None:
        self.setName("tombstone reaper")
        self.endpoints = endpoints
        self.clock = clock
        self.ttl = ttl
        self.granularity = granularity
        self.reaped = 0  # highest index this server reaped
        self.due = 0  # highest noted index older than the TTL
        self._noted: deque[tuple[float, int]] = deque()
        self._loop: LoopingCall | None = None
        self._applying: Deferred[tuple[int, Any]] | None = None

    def startService(self) -> None:
        super().startService()
        self._noted.clear()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.granularity, now=False).addErrback(
            lambda f: log.failure("tombstone reaper stopped", f)
        )

    def tick(self) -> None:
        now = self.clock.seconds()
        self._noted.append((now, self.endpoints.state.max_index(TOMBSTONES)))
        while self._noted and self._noted[0][0] <= now - self.ttl:
            self.due = max(self.due, self._noted.popleft()[1])
        leading = self.endpoints.consensus.is_leader()
        if self.due > self.reaped and self._applying is None and leading:
            self._reap(self.due)

    def _reap(self, index: int) -> None:
        body = {"Datacenter": self.endpoints.datacenter, "Op": TOMBSTONE_REAP, "ReapIndex": index}
        d: Deferred[tuple[int, Any]] = self.endpoints.consensus.apply(
            commands.encode(MessageType.TOMBSTONE, body)
        )
        self._applying = d

        def done(_: object) -> None:
            self.reaped = max(self.reaped, index)
            log.debug("reaped tombstones up to index {index}", index=index)

        def failed(f: Failure) -> None:
            # Leadership lost or the log refused it: the next term's reaper tries again.
            log.warn("failed to reap tombstones up to index {index}: {error}", index=index,
                     error=f.getErrorMessage())

        def finished(_: object) -> None:
            self._applying = None

        d.addCallbacks(done, failed).addBoth(finished)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return succeed(None)
