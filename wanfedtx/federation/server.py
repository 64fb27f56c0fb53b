# -*- test-case-name: tests.unit.federation,tests.integration.federation -*-
"""Federation states on one server: FSM type 30, RPC endpoints and the leader routines.

:class:`FederationServer` is a ``MultiService`` child of the agent on servers. It installs the
raft type-30 handler on the catalog's FSM (before raft replays its log), adds the
``FederationState.*`` handlers to the catalog's local RPC table (``ICatalogServer.handlers``,
which the HTTP API calls through ``rpc``) and, through :meth:`register_into`, to the :8300
endpoint table. It knows neither the agent nor HTTP: the composition root (``wanfedtx.agent``)
mounts the internal HTTP APIs (``wanfedtx.http.federation``) over the catalog's ``rpc``.

With ``leader_routines`` on, its child ``leader`` (``wanfedtx.catalog.leader.LeaderServices``)
watches consensus leadership: on gaining it, a ``MultiService`` of replication (secondaries
only), anti-entropy (every datacenter, unless ``anti_entropy`` is off: the reference's
test-only ``DisableFederationStateAntiEntropy``) and pruning (primary only) is added; on losing
it, that ``MultiService`` is removed, which stops them in reverse order (anti-entropy before
replication, as the reference's ``revokeLeadership``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
from twisted.application.service import IService

from wanfedtx.catalog.leader import LeaderServices
from wanfedtx.catalog.server import ICatalogServer as CatalogServer
from wanfedtx.federation import fsm as fed_fsm
from wanfedtx.federation.antientropy import (
    FEDERATION_STATE_PRUNE_INTERVAL,
    FederationStateAntiEntropy,
    FederationStatePruning,
)
from wanfedtx.federation.endpoints import FederationEndpoints
from wanfedtx.federation.loop import LOOP_BURST, LOOP_RATE
from wanfedtx.federation.metrics import register_state_age
from wanfedtx.federation.replication import (
    FEDERATION_STATE_REPLICATION_APPLY_LIMIT,
    FEDERATION_STATE_REPLICATION_BURST,
    FEDERATION_STATE_REPLICATION_RATE,
    FederationStateReplicator,
)
from wanfedtx.metrics import REGISTRY
from wanfedtx.services import MultiService, Service


class ICatalogServer(CatalogServer, Protocol):
    """What federation states need from a server's catalog: also its reactor."""

    @property
    def reactor(self) -> Any: ...


@attrs.frozen
class FederationTiming:
    """The reference's constants (``consul.Config`` and ``leader_*.go``); tests shorten them."""

    loop_rate: float = LOOP_RATE
    loop_burst: int = LOOP_BURST
    prune_interval: float = FEDERATION_STATE_PRUNE_INTERVAL
    replication_rate: float = FEDERATION_STATE_REPLICATION_RATE
    replication_burst: int = FEDERATION_STATE_REPLICATION_BURST
    replication_apply_limit: float = FEDERATION_STATE_REPLICATION_APPLY_LIMIT


class FederationServer(MultiService):
    """Federation states on one server."""

    def __init__(
        self,
        catalog: ICatalogServer,
        primary_datacenter: str,
        *,
        leader_routines: bool = False,
        anti_entropy: bool = True,
        datacenters: Callable[[], Iterable[str]] | None = None,
        timing: FederationTiming | None = None,
        rng: random.Random | None = None,
        replication_token: str = "",
    ) -> None:
        super().__init__()
        self.catalog = catalog
        #: ``acl.tokens.replication``: sent by replication and anti-entropy to the primary
        self.replication_token = replication_token
        self.datacenter = catalog.datacenter
        self.primary_datacenter = primary_datacenter or catalog.datacenter
        self.leader_routines = leader_routines
        self.anti_entropy_enabled = anti_entropy
        self.timing = timing if timing is not None else FederationTiming()
        self.rng = rng if rng is not None else random.Random()
        if datacenters is None:
            known = getattr(catalog.endpoints.forwarder, "datacenters", None)
            datacenters = known if known is not None else (lambda: [self.datacenter])
        self.datacenters = datacenters
        fed_fsm.install(catalog.fsm)
        self.endpoints = FederationEndpoints(catalog.endpoints, self.primary_datacenter)
        register_state_age(  # consul_federation_state_age{datacenter}
            REGISTRY, lambda: catalog.endpoints.state.federation_state_list(None)[1],
            catalog.reactor,
        )
        catalog.handlers.update(self.endpoints.handlers())
        #: Runs the leader routines while this server leads (with ``leader_routines``).
        self.leader: LeaderServices | None = None
        if leader_routines:
            self.leader = LeaderServices(catalog.consensus, self.build_routines)
            self.leader.setServiceParent(self)

    @property
    def routines(self) -> list[IService]:
        """The leader routines now running (start order), empty when not leading."""
        return self.leader.routines if self.leader is not None else []

    @property
    def is_primary(self) -> bool:
        return self.datacenter == self.primary_datacenter

    def register_into(self, registry: Any) -> None:
        """Add the ``FederationState.*`` handlers to the :8300 endpoint table."""
        self.endpoints.register_into(registry)

    # -- leader routines -----------------------------------------------------------------------

    def build_routines(self) -> list[Service]:
        """The routines this server runs while it leads, in start order."""
        t = self.timing
        ep = self.catalog.endpoints
        clock = self.catalog.reactor
        out: list[Service] = []
        if not self.is_primary:
            out.append(
                FederationStateReplicator(
                    ep,
                    self.primary_datacenter,
                    clock,
                    self.rng,
                    t.replication_rate,
                    t.replication_burst,
                    t.replication_apply_limit,
                    token=self.replication_token,
                )
            )
        if self.anti_entropy_enabled:
            out.append(
                FederationStateAntiEntropy(
                    ep,
                    self.primary_datacenter,
                    clock,
                    self.rng,
                    t.loop_rate,
                    t.loop_burst,
                    token=self.replication_token,
                )
            )
            if self.is_primary:
                out.append(FederationStatePruning(ep, self.datacenters, clock, t.prune_interval))
        return out

    def wake_routines(self) -> None:
        """A server of another datacenter just joined the WAN pool: routines backing off after
        "no path" errors retry now instead of after their backoff (anti-entropy then tells the
        primary, and so its gateway, about this datacenter before gossip gives up on acks
        that have no route yet)."""
        for routine in self.routines:
            wake = getattr(routine, "wake", None)
            if wake is not None:
                wake()
