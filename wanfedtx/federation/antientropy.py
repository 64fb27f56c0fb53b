# -*- test-case-name: tests.unit.federation.test_federation_antientropy -*-
"""Federation-state anti-entropy and pruning: leader routines of every server.

Anti-entropy (routine ``federation state anti-entropy``) keeps this datacenter's federation
state in the primary equal to its catalog. Each round is one local, consistent blocking query
(``MinQueryIndex`` = the last index) reading:

* ``prev``: the stored state of this datacenter (in a secondary: the copy replicated back);
* ``curr``: ``{Datacenter: this DC, MeshGateways: every mesh-gateway instance}`` with its node
  and checks, unfiltered (neither the wanfed meta nor health is looked at here);

and unblocking on a change to either. When ``prev`` exists and ``IsSame`` as ``curr`` the round
is skipped; otherwise ``curr`` (``UpdatedAt`` = now) is written: in the primary straight through
raft, in a secondary with ``FederationState.Apply`` sent to the primary. The first round always
writes (``prev`` is missing), so the primary records itself at startup even with no gateway.
Rounds run under ``retryLoopBackoff`` (see :mod:`.loop`).

Pruning (routine ``federation state pruning``, primary only) runs every
``federationStatePruneInterval`` (1 h, first run after 1 h) and deletes the states of
datacenters the WAN router does not know.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.catalog import structs as catalog_structs
from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.federation import structs
from wanfedtx.federation.errors import FederationError, OtherDatacenterError
from wanfedtx.federation.loop import LOOP_BURST, LOOP_RATE, LoopService, RetryLoop, sleep
from wanfedtx.federation.structs import FederationState
from wanfedtx.fsm.commands import MessageType
from wanfedtx.state import WatchSet
from wanfedtx.state.blocking import BlockingQuery

FEDERATION_STATE_PRUNE_INTERVAL = 3600.0

ANTI_ENTROPY_ROUTINE = "federation state anti-entropy"
PRUNING_ROUTINE = "federation state pruning"

log = Logger(namespace="agent.server.leader")

PrevCurr = tuple[FederationState | None, FederationState]
"""One round's ``(prev, curr)``: the stored state of this datacenter and the catalog's."""


class FederationStateAntiEntropy(RetryLoop):
    """Pushes this datacenter's mesh gateways into its federation state in the primary."""

    def __init__(
        self,
        endpoints: Endpoints,
        primary_datacenter: str,
        clock: IReactorTime,
        rng: random.Random | None = None,
        rate: float = LOOP_RATE,
        burst: int = LOOP_BURST,
        token: str = "",
    ) -> None:
        super().__init__(ANTI_ENTROPY_ROUTINE, clock, self.maybe_sync, self._log_error, rate, burst)
        self.endpoints = endpoints
        #: the replication token (``acl.tokens.replication``) sent with the write to the primary
        self.token = token
        self.datacenter = endpoints.datacenter
        self.primary_datacenter = primary_datacenter or self.datacenter
        self.rng = rng if rng is not None else random.Random()
        self.syncs = 0

    @staticmethod
    def _log_error(exc: BaseException) -> None:
        log.error(
            "error performing anti-entropy sync of federation state: error={error}",
            error=str(exc),
        )

    def fetch(self, last_index: int) -> Deferred[tuple[int, PrevCurr]]:
        """The blocking query of one round: ``(index, (prev, curr))``."""
        return Deferred.fromCoroutine(self._fetch(last_index))

    async def _fetch(self, last_index: int) -> tuple[int, PrevCurr]:
        await self.endpoints.consensus.verify_leader()
        result: tuple[int, PrevCurr] = await BlockingQuery(
            self.endpoints.timers, self.rng, last_index, None, self._details
        )
        return result

    def _details(self, ws: WatchSet | None) -> tuple[int, PrevCurr]:
        state = self.endpoints.state
        fed_index, prev = state.federation_state_get(ws, self.datacenter)
        gw_index, rows = state.check_service_nodes(ws, kind=structs.MESH_GATEWAY_KIND)
        curr = FederationState(
            self.datacenter,
            tuple(catalog_structs.check_service_node_out(n, s, c) for n, s, c in rows),
        )
        return max(fed_index, gw_index), (prev, curr)

    def maybe_sync(self, last_index: int) -> Deferred[int]:
        return Deferred.fromCoroutine(self._maybe_sync(last_index))

    async def _maybe_sync(self, last_index: int) -> int:
        index, (prev, curr) = await self.fetch(last_index)
        if prev is not None and structs.is_same(prev, curr):
            log.debug("federation state anti-entropy sync skipped; already up to date")
            return index
        try:
            await self.update_our_federation_state(curr)
        except CancelledError:
            raise  # the loop is stopping: not an error to wrap, log and retry
        except Exception as exc:
            raise FederationError(
                f"error performing federation state anti-entropy sync: {exc}"
            ) from exc
        self.syncs += 1
        log.info("federation state anti-entropy synced")
        return index

    async def update_our_federation_state(self, curr: FederationState) -> None:
        if curr.datacenter != self.datacenter:
            raise OtherDatacenterError()
        state = FederationState(
            curr.datacenter,
            curr.mesh_gateways,
            updated_at=structs.format_time(self.clock.seconds()),
        )
        req = {
            "Datacenter": self.primary_datacenter,
            "Op": structs.OP_UPSERT,
            "State": state.to_wire(),
        }
        if self.datacenter == self.primary_datacenter:
            # The primary writes through raft: it may have no token for the RPC.
            await self.endpoints._apply(MessageType.FEDERATION_STATE, req)
            return
        forwarder = self.endpoints.forwarder
        if forwarder is None:
            raise FederationError(
                f"no path to the primary datacenter {self.primary_datacenter!r} "
                "(this server has no RPC forwarder)"
            )
        await forwarder.forward_dc(
            self.primary_datacenter, "FederationState.Apply", dict(req, Token=self.token)
        )


class FederationStatePruning(LoopService):
    """In the primary: hourly, delete the states of datacenters the WAN router does not know."""

    def __init__(
        self,
        endpoints: Endpoints,
        datacenters: Callable[[], Iterable[str]],
        clock: IReactorTime,
        interval: float = FEDERATION_STATE_PRUNE_INTERVAL,
    ) -> None:
        super().__init__(PRUNING_ROUTINE)
        self.endpoints = endpoints
        self.datacenters = datacenters
        self.clock = clock
        self.interval = interval

    async def run(self) -> None:
        while True:
            await sleep(self.clock, self.interval)
            try:
                await self.prune_stale_federation_states()
            except CancelledError:
                raise
            except Exception as exc:
                log.error("error pruning stale federation states: error={error}", error=str(exc))

    async def prune_stale_federation_states(self) -> list[str]:
        """Delete every state whose datacenter is unknown; the names deleted."""
        known = {dc.lower() for dc in self.datacenters()}
        known.add(self.endpoints.datacenter.lower())
        _, rows = self.endpoints.state.federation_state_list(None)
        pruned = []
        for row in rows:
            dc = row.datacenter
            if dc.lower() in known:
                continue
            log.info("pruning stale federation state: datacenter={datacenter}", datacenter=dc)
            req = {
                "Datacenter": self.endpoints.datacenter,
                "Op": structs.OP_DELETE,
                "State": {"Datacenter": dc},
            }
            try:
                await self.endpoints._apply(MessageType.FEDERATION_STATE, req)
            except CancelledError:
                raise
            except Exception as exc:
                raise FederationError(f"Failed to delete federation state {dc}: {exc}") from exc
            pruned.append(dc)
        return pruned
