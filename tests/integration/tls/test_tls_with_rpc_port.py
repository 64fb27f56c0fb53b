"""The real TLSConfigurator behind the RPC layer's :8300 port and dialer, on 127.0.0.1.

Proves the seams match (``IServerTLS`` / ``IClientTLS``): cross-DC RPC through an SNI-routing
gateway with ALPN ``consul/rpc-multi``, legacy RPCTLS inside a DC with ``verify_incoming``, and a
refused dial when the target's certificate lacks the node name.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from rpc_support import SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint

from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import DialError
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI
from wanfedtx.tls.certs import CertAndKey
from wanfedtx.tls.configurator import TLSConfigurator

pytestmark = pytest.mark.integration


class Resolver:
    def __init__(self, gw: str) -> None:
        self.gw = gw

    def pick_gateway(self, dc: str) -> str | None:
        return self.gw


class Node:
    def __init__(self, name: str, dc: str, service: RPCPortService, addr: str, pool: ConnPool):
        self.name, self.dc, self.service, self.addr, self.pool = name, dc, service, addr, pool

    async def stop(self) -> None:
        await self.pool.stopService()
        await self.service.stopService()


async def start(
    reactor: Any,
    pki: PKI,
    dc: str,
    name: str,
    gateway: str | None,
    pair: CertAndKey | None = None,
) -> Node:
    tls = TLSConfigurator(pki.settings(dc, name, pair=pair))
    endpoints = default_endpoints()
    endpoints.register("Test.Who", lambda args: {"node": name, "dc": dc, "args": args})
    reg = HandlerRegistry()
    reg.register(RPCType.CONSUL, RPCHandler(endpoints, multi=False))
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(endpoints, multi=True))
    factory = RPCPortFactory(reg, reactor, tls, metrics=Registry())
    service = RPCPortService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), factory)
    service.startService()
    port = await service.when_listening()
    dialer = Dialer(
        reactor,
        dc,
        server=True,
        tls=tls,
        gateway_resolver=Resolver(gateway) if gateway else None,
        timeout=5.0,
    )
    pool = ConnPool(dialer, reactor)
    pool.startService()
    return Node(name, dc, service, f"127.0.0.1:{port.getHost().port}", pool)


@pytest_twisted.ensureDeferred
async def test_rpc_port_with_tls_configurator(reactor: Any) -> None:
    pki = PKI()
    router = SNIRouter(reactor)
    gw = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw_addr = f"127.0.0.1:{gw.getHost().port}"
    pri = await start(reactor, pki, "primary", "pri", gw_addr)
    sec = await start(reactor, pki, "secondary", "sec", gw_addr)
    pri2 = await start(reactor, pki, "primary", "pri2", None)
    nonode = await start(reactor, pki, "primary", "old", None, pair=pki.server("primary"))
    router.routes["pri.server.primary.consul"] = pri.addr
    router.routes["sec.server.secondary.consul"] = sec.addr
    router.routes["old.server.primary.consul"] = nonode.addr
    try:
        # cross-DC both ways via the gateway: native TLS, ALPN consul/rpc-multi, SNI per node
        assert await sec.pool.rpc("primary", "pri", "192.0.2.1:8300", "Test.Who", 1) == {
            "node": "pri",
            "dc": "primary",
            "args": 1,
        }
        assert await pri.pool.rpc("secondary", "sec", "192.0.2.1:8300", "Test.Who", 2) == {
            "node": "sec",
            "dc": "secondary",
            "args": 2,
        }
        assert set(router.seen) == {"pri.server.primary.consul", "sec.server.secondary.consul"}
        # same DC: legacy byte 3 + TLS (verify_incoming/outgoing/server_hostname all on)
        assert (await pri.pool.rpc("primary", "pri2", pri2.addr, "Test.Who", 3))["node"] == "pri2"
        # a server whose cert lacks <node>.server.<dc>.<domain> cannot be dialled by node name
        with pytest.raises(DialError, match="x509: certificate is valid for") as e:
            await sec.pool.rpc("primary", "old", "192.0.2.1:8300", "Status.Ping")
        assert "not old.server.primary.consul" in str(e.value)
    finally:
        for n in (pri, sec, pri2, nonode):
            await n.stop()
        await gw.stopListening()
