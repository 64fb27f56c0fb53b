"""``?dc=`` over the real RPC layer: two single-server datacenters on 127.0.0.1, real TLS, and
cross-DC RPC through an SNI-routing gateway (the ``case-wanfed-gw`` reads and writes).

Each DC: a ``CatalogAgent`` whose endpoints are registered in the :8300 port's endpoint table,
a connection pool that dials the other DC through the gateway, and its /v1 HTTP API. py-consul
talks to dc1's HTTP API with ``dc=dc2``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import consul
import pytest
import pytest_twisted
from klein import Klein
from rpc_support import CA, OpenSSLTLS, SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.web.server import Site

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.http.routes import install_error_handlers
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
    name: str
    node: str
    agent: CatalogAgent
    rpc_service: RPCPortService
    pool: ConnPool
    http_port: Any
    rpc_addr: str

    @property
    def http(self) -> int:
        return int(self.http_port.getHost().port)

    async def stop(self) -> None:
        await self.http_port.stopListening()
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
        # The other DC's server address is only a pool key: the gateway does the routing.
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
    app = Klein()
    agent.mount(app)
    install_error_handlers(app)
    site = Site(app.resource())
    site.noisy = False
    http_port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return DC(dc, node, agent, service, pool, http_port, addr)


@pytest_twisted.ensureDeferred
async def test_kv_and_catalog_reads_across_datacenters_via_gateway(reactor: Any) -> None:
    ca = CA()
    router = SNIRouter(reactor)
    gw_port = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw = f"127.0.0.1:{gw_port.getHost().port}"
    pri = await start_dc(reactor, ca, "primary", "pri", ("secondary", "sec"), gw)
    sec = await start_dc(reactor, ca, "secondary", "sec", ("primary", "pri"), gw)
    router.routes["pri.server.primary.consul"] = pri.rpc_addr
    router.routes["sec.server.secondary.consul"] = sec.rpc_addr
    c_pri = consul.Consul(host="127.0.0.1", port=pri.http)
    c_sec = consul.Consul(host="127.0.0.1", port=sec.http)
    try:
        # primary -> secondary write, as verify.bats: PUT /v1/kv/foo?dc=secondary
        assert await deferToThread(c_pri.kv.put, "foo", '{"Value":"bar"}', dc="secondary")
        _, entry = await deferToThread(c_sec.kv.get, "foo")
        assert entry["Value"] == b'{"Value":"bar"}'
        _, local = await deferToThread(c_pri.kv.get, "foo")
        assert local is None
        # and the mirror image
        assert await deferToThread(c_sec.kv.put, "oof", "rab", dc="primary")
        _, entry = await deferToThread(c_pri.kv.get, "oof")
        assert entry["Value"] == b"rab"
        # /v1/catalog/service/consul?dc=secondary shows the secondary's server
        _, servers = await deferToThread(c_pri.catalog.service, "consul", dc="secondary")
        assert [(s["Node"], s["Datacenter"]) for s in servers] == [("sec", "secondary")]
        assert "sec.server.secondary.consul" in router.seen
        assert "pri.server.primary.consul" in router.seen
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await deferToThread(c_pri.kv.get, "foo", dc="tertiary")
    finally:
        c_pri.http.session.close()
        c_sec.http.session.close()
        await pri.stop()
        await sec.stop()
        await gw_port.stopListening()
