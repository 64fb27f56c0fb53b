"""Anti-entropy and replication of federation states between two datacenters over the real RPC
layer: TLS with ALPN/SNI through an SNI-routing gateway on 127.0.0.1, msgpack RPC codec.

Each DC is a ``CatalogAgent`` plus its ``FederationServer`` with the leader routines on, whose
``FederationState.*`` endpoints are registered in its :8300 port's endpoint table. The
secondary's anti-entropy sends its mesh gateway to the primary with ``FederationState.Apply``;
the secondary's replicator copies the primary's states back with a blocking
``FederationState.List``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import pytest_twisted
from rpc_support import CA, OpenSSLTLS, SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation.server import FederationServer
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.forward import Forwarder, StaticLeader, StaticRouter
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService

pytestmark = pytest.mark.integration


class Resolver:
    def __init__(self, gw: str) -> None:
        self.gw = gw

    def pick_gateway(self, dc: str) -> str | None:
        return self.gw


@attrs.define
class DC:
    agent: CatalogAgent
    fed: FederationServer
    rpc_service: RPCPortService
    pool: ConnPool
    rpc_addr: str

    async def stop(self) -> None:
        await self.fed.stopService()
        await self.agent.stopService()
        await self.pool.stopService()
        await self.rpc_service.stopService()


async def start_dc(reactor: Any, ca: CA, dc: str, node: str, other: tuple[str, str], gw: str) -> DC:
    tls = OpenSSLTLS(ca, ca.server(dc, node))
    table = default_endpoints()
    reg = HandlerRegistry()
    reg.register(RPCType.CONSUL, RPCHandler(table, multi=False))
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(table, multi=True))
    service = RPCPortService(
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        RPCPortFactory(reg, reactor, tls),
    )
    service.startService()
    port = (await service.when_listening()).getHost().port
    pool = ConnPool(
        Dialer(reactor, dc, server=True, tls=tls, gateway_resolver=Resolver(gw), timeout=5.0),
        reactor,
    )
    pool.startService()
    addr = f"127.0.0.1:{port}"
    other_dc, other_node = other
    forwarder = Forwarder(
        pool,
        dc,
        StaticLeader(ServerAddress(node, addr), node),
        StaticRouter({other_dc: [ServerAddress(other_node, "192.0.2.1:8300")]}),
    )
    agent = CatalogAgent(
        node_name=node,
        datacenter=dc,
        advertise_addr="127.0.0.1",
        server_port=port,
        reactor=reactor,
        forwarder=forwarder,
        rng=random.Random(3),
    )
    fed = FederationServer(agent, "primary", leader_routines=True, rng=random.Random(5))
    agent.endpoints.register_into(table)
    fed.register_into(table)
    agent.startService()
    fed.startService()
    return DC(agent, fed, service, pool, addr)


def states(dc: DC) -> list[dict[str, Any]]:
    _, rows = dc.agent.fsm.state.federation_state_list(None)
    return [
        {k: v for k, v in r.items() if k not in ("CreateIndex", "ModifyIndex", "UpdatedAt")}
        for r in rows
    ]


@pytest_twisted.ensureDeferred
async def test_gateways_reach_the_primary_and_replicate_back(reactor: Any) -> None:
    ca = CA()
    router = SNIRouter(reactor)
    gw_port = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw = f"127.0.0.1:{gw_port.getHost().port}"
    pri = await start_dc(reactor, ca, "primary", "pri", ("secondary", "sec"), gw)
    sec = await start_dc(reactor, ca, "secondary", "sec", ("primary", "pri"), gw)
    router.routes["pri.server.primary.consul"] = pri.rpc_addr
    router.routes["sec.server.secondary.consul"] = sec.rpc_addr
    try:
        reg = {
            "Node": "gw-sec",
            "Address": "127.0.0.9",
            "Service": {
                "Kind": "mesh-gateway",
                "Service": "mesh-gateway",
                "Port": 4432,
                "Meta": {"consul-wan-federation": "1"},
            },
        }
        await sec.agent.rpc("Catalog.Register", reg)
        want_gateways = None
        for _ in range(200):
            rows = states(sec)
            if [r["Datacenter"] for r in rows] == ["primary", "secondary"]:
                want_gateways = rows[1].get("MeshGateways")
                if want_gateways:
                    break
            await deferLater(reactor, 0.05, lambda: None)
        assert want_gateways is not None and want_gateways[0]["Node"]["Node"] == "gw-sec"
        assert states(sec) == states(pri)
        assert "pri.server.primary.consul" in router.seen
        reply = await sec.agent.rpc("FederationState.ListMeshGateways", {"Datacenter": "primary"})
        assert list(reply["DatacenterNodes"]) == ["secondary"]
    finally:
        await sec.stop()
        await pri.stop()
        await gw_port.stopListening()
