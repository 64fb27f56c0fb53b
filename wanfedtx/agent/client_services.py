# -*- test-case-name: tests.unit.agent.test_agent_client_wiring -*-
"""Wiring of a client agent (``server = false``): its servers, RPC client and local state.

:class:`ClientAgent` is the client's counterpart of the servers' ``CatalogAgent``: the same
``IServerState`` interface the HTTP layer serves (``datacenter``, ``rpc``, ``local``,
``runners``), so ``wanfedtx.http.routes.server_families`` mounts the whole API on a client too.
Its ``rpc`` is :class:`wanfedtx.client.rpc.ClientRPC` (every call forwarded to a server of this
datacenter) instead of the in-process endpoint table, and its anti-entropy pushes the local
services and checks through it. The servers come from the LAN pool's events
(:class:`~wanfedtx.client.router.ServerManager`, fed by the agent); a server joining triggers a
full anti-entropy sync; the connection pool dials servers with the agent's TLS settings, as
servers dial each other inside a datacenter.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.defer import Deferred

from wanfedtx.agent.catalog_services import _check_dict, service_dict
from wanfedtx.client.router import Rebalancer, ServerManager, address_of
from wanfedtx.client.rpc import ClientRPC
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.gossip.pools import ServerInfo
from wanfedtx.local.ae import AntiEntropy
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import decode_check, decode_service
from wanfedtx.local.state import LocalState
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.interfaces import IClientTLS
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.services import MultiService


class ClientAgent(MultiService):
    """Servers, connection pool, RPC client, local services/checks and anti-entropy of one
    client agent."""

    def __init__(
        self,
        config: RuntimeConfig,
        reactor: ReactorLike,
        tls: IClientTLS | None,
        *,
        lan_members: Callable[[], int] = lambda: 0,
        rng: random.Random | None = None,
        ae_interval: float = 60.0,
    ) -> None:
        super().__init__()
        rt = config
        self.datacenter = rt.datacenter
        self.node_name = rt.node_name
        self.servers = ServerManager(rt.datacenter, rng=rng, on_server_up=self._server_up,
                                     clock=reactor)
        self.dialer = Dialer(reactor, rt.datacenter, server=False, tls=tls)
        self.pool = ConnPool(self.dialer, reactor)
        self.pool.setServiceParent(self)
        self.client = ClientRPC(
            self.servers, self.pool, rt.datacenter, reactor,
            hold_timeout=rt.rpc_hold_timeout, rate=rt.rpc_rate_limit, burst=rt.rpc_max_burst,
            rng=rng,
        )
        self.rpc = self.client.rpc
        self.local = LocalState(rt.node_name)
        self.runners = CheckRunners(self.local, reactor)
        self.runners.setServiceParent(self)
        for i, svc in enumerate(rt.services):
            self.local.add_service(decode_service(service_dict(svc), f"services[{i}]"), svc.token)
        for i, check in enumerate(rt.checks):
            self.local.add_check(decode_check(_check_dict(check), f"checks[{i}]"))
        addr = rt.advertise_addr_lan
        self.ae = AntiEntropy(
            self.local,
            self.rpc,
            {
                "Datacenter": rt.datacenter,
                "ID": rt.node_id,
                "Address": addr,
                "TaggedAddresses": {"lan": addr, "wan": addr},
                "NodeMeta": dict(rt.node_meta),
            },
            reactor,
            rng,
            ae_interval,
            agent_token=rt.acl_tokens.agent or rt.acl_tokens.default,
        )
        self.ae.setServiceParent(self)
        self.rebalancer = Rebalancer(self.servers, self._ping, reactor, lan_members)
        self.rebalancer.setServiceParent(self)

    def _server_up(self) -> None:
        """Consul's ``ServerUp``: a server joined (or a new leader was announced)."""
        if self.ae.running:
            self.ae.sync_full()

    def _ping(self, srv: ServerInfo) -> Deferred[bool]:
        to = address_of(srv)
        return self.pool.ping(self.datacenter, to.name, to.addr)

    def known_servers(self) -> int:
        return self.servers.known_servers()

    def stopService(self) -> Deferred[None]:
        self.client.stop()
        d: Deferred[None] = super().stopService()
        return d
