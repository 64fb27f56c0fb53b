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
from twisted.internet.task import deferLater
from two_dc_support import ServerDC, start_gateway, start_server_dc

from wanfedtx.federation.server import FederationServer
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration


@attrs.define
class DC:
    server: ServerDC
    fed: FederationServer

    @property
    def agent(self) -> Any:
        return self.server.agent

    @property
    def rpc_addr(self) -> str:
        return self.server.rpc_addr

    async def stop(self) -> None:
        await self.fed.stopService()
        await self.server.stop()


async def start_dc(
    reactor: Any, ca: PKI, dc: str, node: str, other: tuple[str, str], gw: str
) -> DC:
    server = await start_server_dc(reactor, ca, dc, node, other, gw)
    fed = FederationServer(server.agent, "primary", leader_routines=True, rng=random.Random(5))
    fed.register_into(server.table)
    fed.startService()
    return DC(server, fed)


def states(dc: DC) -> list[dict[str, Any]]:
    _, rows = dc.agent.fsm.state.federation_state_list(None)
    return [
        {
            k: v
            for k, v in r.to_wire().items()
            if k not in ("CreateIndex", "ModifyIndex", "UpdatedAt")
        }
        for r in rows
    ]


@pytest_twisted.ensureDeferred
async def test_gateways_reach_the_primary_and_replicate_back(reactor: Any) -> None:
    ca = PKI()
    gateway = start_gateway(reactor)
    router, gw = gateway.router, gateway.address
    pri = await start_dc(reactor, ca, "primary", "pri", ("secondary", "sec"), gw)
    sec = await start_dc(reactor, ca, "secondary", "sec", ("primary", "pri"), gw)
    gateway.route(pri.server)
    gateway.route(sec.server)
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
        await gateway.port.stopListening()
