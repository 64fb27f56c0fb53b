"""``?dc=`` over the real RPC layer: two single-server datacenters on 127.0.0.1, real TLS, and
cross-DC RPC through an SNI-routing gateway (the ``case-wanfed-gw`` reads and writes).

Each DC: a ``CatalogAgent`` whose endpoints are registered in the :8300 port's endpoint table,
a connection pool that dials the other DC through the gateway, and its /v1 HTTP API. py-consul
talks to dc1's HTTP API with ``dc=dc2``.
"""

from __future__ import annotations

from typing import Any

import attrs
import consul
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.server import Site
from two_dc_support import ServerDC, start_gateway, start_server_dc

from wanfedtx.http.app import API
from wanfedtx.http.routes import server_families
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration


@attrs.define
class DC:
    server: ServerDC
    http_port: Any

    @property
    def rpc_addr(self) -> str:
        return self.server.rpc_addr

    @property
    def agent(self) -> Any:
        return self.server.agent

    @property
    def http(self) -> int:
        return int(self.http_port.getHost().port)

    async def stop(self) -> None:
        await self.http_port.stopListening()
        await self.server.stop()


async def start_dc(
    reactor: Any, ca: PKI, dc: str, node: str, other: tuple[str, str], gw: str
) -> DC:
    server = await start_server_dc(reactor, ca, dc, node, other, gw)
    site = Site(API(server_families(server.agent)).resource())
    site.noisy = False
    return DC(server, reactor.listenTCP(0, site, interface="127.0.0.1"))


@pytest_twisted.ensureDeferred
async def test_kv_and_catalog_reads_across_datacenters_via_gateway(reactor: Any) -> None:
    ca = PKI()
    gateway = start_gateway(reactor)
    router, gw = gateway.router, gateway.address
    pri = await start_dc(reactor, ca, "primary", "pri", ("secondary", "sec"), gw)
    sec = await start_dc(reactor, ca, "secondary", "sec", ("primary", "pri"), gw)
    gateway.route(pri.server)
    gateway.route(sec.server)
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
        await gateway.port.stopListening()
