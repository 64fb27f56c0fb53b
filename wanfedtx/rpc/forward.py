"""Forwarding RPCs to this datacenter's leader and to servers of other datacenters.

``Forwarder.forward_to_leader`` asks an ``ILeaderProvider`` (consensus; ``StaticLeader`` is a
working single-server stand-in configured with the one server) and calls the leader through the
pool. ``Forwarder.forward_dc`` asks an ``IRouter`` for the target DC's servers, counts the
``rpc.cross-dc`` metric (label ``datacenter``) and calls the first server through the pool; the
pool's dialer goes through a mesh gateway when federation via gateways is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.rpc.errors import NoDCPath, NoLeader
from wanfedtx.rpc.interfaces import ILeaderProvider, IRouter, ServerAddress
from wanfedtx.rpc.pool import ConnPool


class StaticLeader:
    """``ILeaderProvider`` for a configuration with one fixed server (it is the leader)."""

    def __init__(self, leader: ServerAddress, local_name: str) -> None:
        self._leader = leader
        self._local_name = local_name

    def is_leader(self) -> bool:
        return self._leader.name == self._local_name

    def leader(self) -> ServerAddress | None:
        return self._leader


class StaticRouter:
    """``IRouter`` over a fixed ``{dc: [ServerAddress, ...]}`` table (static configuration)."""

    def __init__(self, servers: Mapping[str, Sequence[ServerAddress]]) -> None:
        self._servers = {dc: list(s) for dc, s in servers.items()}

    def servers_for_dc(self, dc: str) -> Sequence[ServerAddress]:
        return self._servers.get(dc, [])

    def datacenters(self) -> Sequence[str]:
        return sorted(dc for dc, servers in self._servers.items() if servers)


class Forwarder:
    """Sends RPCs to where they must run: the local leader or another datacenter."""

    def __init__(
        self,
        pool: ConnPool,
        datacenter: str,
        leader: ILeaderProvider,
        router: IRouter,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.pool = pool
        self.datacenter = datacenter
        self.leader = leader
        self.router = router
        self.cross_dc = metrics.counter(
            "rpc.cross-dc", "RPCs forwarded to another datacenter", ("datacenter",)
        )

    def datacenters(self) -> list[str]:
        """Every datacenter reachable from here, this one included, sorted."""
        return sorted({self.datacenter, *self.router.datacenters()})

    def forward_to_leader(self, method: str, args: Any = None) -> Deferred[Any]:
        """Call ``method`` on this datacenter's leader (the caller checks ``is_leader``)."""
        server = self.leader.leader()
        if server is None:
            d: Deferred[Any] = Deferred()
            d.errback(NoLeader())
            return d
        return self.pool.rpc(self.datacenter, server.name, server.addr, method, args)

    def forward_dc(self, dc: str, method: str, args: Any = None) -> Deferred[Any]:
        """Call ``method`` on a server of datacenter ``dc``."""
        servers = self.router.servers_for_dc(dc)
        if not servers:
            d: Deferred[Any] = Deferred()
            d.errback(NoDCPath())
            return d
        self.cross_dc.inc(datacenter=dc)
        server = servers[0]
        return self.pool.rpc(dc, server.name, server.addr, method, args)
