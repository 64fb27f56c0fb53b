"""Test helper: single-server datacenters over the real RPC layer, joined by an SNI gateway.

Each datacenter is a ``CatalogAgent`` whose endpoints are registered in its :8300 port's
endpoint table (real TLS with ALPN, msgpack RPC codec), with a connection pool that dials the
other datacenter through the gateway (the other server's address is only a pool key: the
gateway does the routing). Tests add what they need on top (HTTP API, federation server).
"""

from __future__ import annotations

import random
from typing import Any

import attrs
from rpc_support import OpenSSLTLS, SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import Endpoints, default_endpoints
from wanfedtx.rpc.forward import Forwarder, StaticLeader, StaticRouter
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI


class FixedGateway:
    """A gateway resolver that always answers the one test gateway."""

    def __init__(self, gw: str) -> None:
        self.gw = gw

    def pick_gateway(self, dc: str) -> str | None:
        return self.gw


@attrs.define
class ServerDC:
    name: str
    node: str
    agent: CatalogAgent
    table: Endpoints
    rpc_service: RPCPortService
    pool: ConnPool
    rpc_addr: str

    async def stop(self) -> None:
        await self.agent.stopService()
        await self.pool.stopService()
        await self.rpc_service.stopService()


@attrs.define
class Gateway:
    router: SNIRouter
    port: Any
    address: str

    def route(self, dc: ServerDC) -> None:
        self.router.routes[f"{dc.node}.server.{dc.name}.consul"] = dc.rpc_addr


def start_gateway(reactor: Any) -> Gateway:
    router = SNIRouter(reactor)
    port = reactor.listenTCP(0, router, interface="127.0.0.1")
    return Gateway(router, port, f"127.0.0.1:{port.getHost().port}")


async def start_server_dc(
    reactor: Any, ca: PKI, dc: str, node: str, other: tuple[str, str], gw: str
) -> ServerDC:
    """A started datacenter ``dc`` (server ``node``) that reaches ``other`` = (dc, node) via
    the gateway at ``gw``; the agent's endpoints are registered, the agent is started."""
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
        Dialer(reactor, dc, server=True, tls=tls, gateway_resolver=FixedGateway(gw), timeout=5.0),
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
    agent.endpoints.register_into(table)
    agent.startService()
    return ServerDC(dc, node, agent, table, service, pool, addr)
