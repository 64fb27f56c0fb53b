# -*- test-case-name: tests.unit.federation.test_federation_replication -*-
"""Replication of federation states from the primary into a secondary (leader routine).

The reference's generic ``Replicator`` around an ``IndexReplicator`` whose delegate is the
federation-state replicator, as one loop (routine ``federation state replication``):

1. wait on a limiter (``FederationStateReplicationRate`` 1/s, burst 5);
2. ``FederationState.List`` against the primary as a blocking query (``AllowStale``,
   ``MinQueryIndex`` = the last remote index), then the local list;
3. if the remote index went backwards, log it and diff as if from 0 (a full sync);
4. diff by a sorted merge walk: a datacenter only local is deleted; only remote is updated; on
   both, updated only when the remote ``ModifyIndex`` is above the last remote index;
5. apply deletions first, then updates, each through raft with ``PrimaryModifyIndex`` set to the
   remote ``ModifyIndex``, spaced by ``1 / FederationStateReplicationApplyLimit`` s (10 ms);
6. on error: forget the last index (full resync next time), log
   ``replication error (will retry if still leader)`` and wait ``2**(n-1)`` s (10 % jitter,
   at most 120 s) after the n-th consecutive failure.
"""

from __future__ import annotations

import random

import attrs
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.federation import structs
from wanfedtx.federation.errors import FederationError
from wanfedtx.federation.loop import (
    REPLICATION_MAX_WAIT,
    LoopService,
    RateLimiter,
    retry_wait,
    sleep,
)
from wanfedtx.federation.metrics import ReplicationMetrics
from wanfedtx.federation.structs import FederationState
from wanfedtx.fsm.commands import MessageType
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.state.table import Row

REPLICATION_ROUTINE = "federation state replication"
FEDERATION_STATE_REPLICATION_RATE = 1.0
FEDERATION_STATE_REPLICATION_BURST = 5
FEDERATION_STATE_REPLICATION_APPLY_LIMIT = 100.0

log = Logger(namespace="agent.server.replication.federation_state")


def _key(state: FederationState) -> str:
    return state.datacenter.lower()


def diff_remote_and_local(
    local: list[FederationState], remote: list[FederationState], last_remote_index: int
) -> tuple[list[str], list[FederationState]]:
    """``(datacenters to delete, remote states to upsert)``, as ``DiffRemoteAndLocalState``."""
    local = sorted(local, key=_key)
    remote = sorted(remote, key=_key)
    deletions: list[str] = []
    updates: list[FederationState] = []
    i = j = 0
    while i < len(local) and j < len(remote):
        lk, rk = _key(local[i]), _key(remote[j])
        if lk == rk:
            if remote[j].modify_index > last_remote_index:
                updates.append(remote[j])
            i += 1
            j += 1
        elif lk < rk:
            deletions.append(local[i].datacenter)
            i += 1
        else:
            updates.append(remote[j])
            j += 1
    deletions.extend(r.datacenter for r in local[i:])
    updates.extend(remote[j:])
    return deletions, updates


class FederationStateReplicator(LoopService):
    """Keeps this secondary's federation-states table equal to the primary's."""

    def __init__(
        self,
        endpoints: Endpoints,
        primary_datacenter: str,
        clock: IReactorTime,
        rng: random.Random | None = None,
        rate: float = FEDERATION_STATE_REPLICATION_RATE,
        burst: int = FEDERATION_STATE_REPLICATION_BURST,
        apply_limit: float = FEDERATION_STATE_REPLICATION_APPLY_LIMIT,
        max_wait: float = REPLICATION_MAX_WAIT,
        metrics: Registry = REGISTRY,
        token: str = "",
    ) -> None:
        super().__init__(REPLICATION_ROUTINE)
        #: the replication token (``acl.tokens.replication``) sent with every list
        self.token = token
        # leader.replication.federation-state.fetch / .apply
        self._fetch_timer = metrics.summary(
            "leader.replication.federation-state.fetch",
            "Time to fetch the primary's federation states (seconds)",
        )
        self._apply_timer = metrics.summary(
            "leader.replication.federation-state.apply",
            "Time to apply one replication round's changes locally (seconds)",
        )
        self.endpoints = endpoints
        self.primary_datacenter = primary_datacenter
        self.clock = clock
        #: status, index and lag gauges (``wanfedtx.federation.metrics``)
        self.replication_metrics = ReplicationMetrics(metrics, clock)
        self.rng = rng if rng is not None else random.Random()
        self.rate = rate
        self.burst = burst
        self.apply_limit = apply_limit
        self.max_wait = max_wait
        self.last_remote_index = 0
        self.rounds = 0
        self.failures = 0

    async def run(self) -> None:
        limiter = RateLimiter(self.clock, self.rate, self.burst)
        while True:
            await limiter.wait()
            self.rounds += 1
            try:
                index = await self.replicate(self.last_remote_index)
            except CancelledError:
                raise
            except Exception as exc:
                if not self.running:
                    return  # stopped while this round was under way
                self.last_remote_index = 0
                self.failures += 1
                self.replication_metrics.failed()
                log.warn(
                    "replication error (will retry if still leader): error={error}",
                    error=str(exc),
                )
                await self.backoff(self.clock, retry_wait(self.failures, self.rng, self.max_wait))
                continue
            self.failures = 0
            self.last_remote_index = index
            self.replication_metrics.succeeded(index)
            log.debug("replication completed through remote index: index={index}", index=index)

    async def fetch_remote(self, last_remote_index: int) -> tuple[int, list[FederationState]]:
        """The primary's ``(index, states)``; each state checked as an incoming request's."""
        forwarder = self.endpoints.forwarder
        if forwarder is None:
            raise FederationError(
                f"no path to the primary datacenter {self.primary_datacenter!r} "
                "(this server has no RPC forwarder)"
            )
        reply = await forwarder.forward_dc(
            self.primary_datacenter,
            "FederationState.List",
            {
                "Datacenter": self.primary_datacenter,
                "AllowStale": True,
                "MinQueryIndex": last_remote_index,
                "Token": self.token,
            },
        )
        if not isinstance(reply, dict) or not isinstance(reply.get("States"), list):
            raise FederationError("the primary's FederationState.List reply has no States list")
        index = reply.get("Index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise FederationError("the primary's FederationState.List reply has no Index")
        states = [
            structs.decode_federation_state(s, f"States[{i}]")
            for i, s in enumerate(reply["States"])
        ]
        return index, states

    async def replicate(self, last_remote_index: int) -> int:
        """One round; the remote index replicated through."""
        start = self.clock.seconds()
        remote_index, remote = await self.fetch_remote(last_remote_index)
        self._fetch_timer.observe(self.clock.seconds() - start)
        self.replication_metrics.fetched(remote_index, last_remote_index)
        log.debug("finished fetching remote objects: amount={amount}", amount=len(remote))
        _, local = self.endpoints.state.federation_state_list(None)
        if remote_index < last_remote_index:
            log.warn(
                "replication remote index moved backwards, forcing a full sync: "
                "from={old} to={new}",
                old=last_remote_index,
                new=remote_index,
            )
            last_remote_index = 0
        log.debug(
            "diffing replication state: local_amount={local} remote_amount={remote}",
            local=len(local),
            remote=len(remote),
        )
        deletions, updates = diff_remote_and_local(local, remote, last_remote_index)
        log.debug(
            "diffed replication state: deletions={deletions} updates={updates}",
            deletions=len(deletions),
            updates=len(updates),
        )
        start = self.clock.seconds()
        if deletions:
            log.debug("performing deletions: deletions={n}", n=len(deletions))
            for dc in deletions:
                await self._apply(structs.OP_DELETE, {"Datacenter": dc})
        if updates:
            log.debug("performing updates: updates={n}", n=len(updates))
            for remote_state in updates:
                state = attrs.evolve(remote_state, primary_modify_index=remote_state.modify_index)
                await self._apply(structs.OP_UPSERT, state.to_wire())
        if deletions or updates:
            self._apply_timer.observe(self.clock.seconds() - start)
        return remote_index

    async def _apply(self, op: str, state: Row) -> None:
        req = {"Datacenter": self.endpoints.datacenter, "Op": op, "State": state}
        await self.endpoints._apply(MessageType.FEDERATION_STATE, req)
        await sleep(self.clock, 1.0 / self.apply_limit)
