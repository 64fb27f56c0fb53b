"""The RPC port and dialer with the real ``wanfedtx.tls`` TLSConfigurator, 3 DCs via SNI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from rpc_support import SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint

from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import ConnectionClosed, DialError
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI
from wanfedtx.tls.configurator import TLSConfigurator

pytestmark = pytest.mark.integration


class Resolver:
    def __init__(self, gw: str) -> None:
        self.gw = gw

    def pick_gateway(self, dc: str) -> str | None:
        return self.gw


async def start(reactor: Any, tls: TLSConfigurator, dc: str, name: str, gw: str | None
                ) -> tuple[RPCPortService, ConnPool, str]:
    eps = default_endpoints()
    eps.register("Test.Who", lambda a: [name, dc])
    reg = HandlerRegistry()
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(eps, multi=True))
    svc = RPCPortService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                         RPCPortFactory(reg, reactor, tls, metrics=Registry()))
    svc.startService()
    port = await svc.when_listening()
    dialer = Dialer(reactor, dc, server=True, tls=tls,
                    gateway_resolver=Resolver(gw) if gw else None)
    pool = ConnPool(dialer, reactor)
    pool.startService()
    return svc, pool, f"127.0.0.1:{port.getHost().port}"


@pytest_twisted.ensureDeferred
async def test_configurator_three_dcs_and_legacy(reactor: Any, tmp_path: Path) -> None:
    pki = PKI()
    router = SNIRouter(reactor)
    gw = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw_addr = f"127.0.0.1:{gw.getHost().port}"
    nodes = []
    for dc, name in [("dc1", "bob"), ("dc2", "betty"), ("dc3", "bonnie")]:
        tls = TLSConfigurator(pki.settings(dc, name, tmp_path / name))
        svc, pool, addr = await start(reactor, tls, dc, name, gw_addr)
        router.routes[f"{name}.server.{dc}.consul"] = addr
        nodes.append((dc, name, svc, pool, addr))
    try:
        for a in nodes:
            for b in nodes:
                if a is not b:
                    assert await a[3].rpc(b[0], b[1], "192.0.2.1:8300", "Test.Who") == [b[1], b[0]]
        # same DC: legacy RPCTLS (byte 3 + TLS + inner byte 4) with verify_incoming on
        tls2 = TLSConfigurator(pki.settings("dc1", "bill", tmp_path / "bill"))
        svc2, pool2, addr2 = await start(reactor, tls2, "dc1", "bill", gw_addr)
        try:
            assert await nodes[0][3].rpc("dc1", "bill", addr2, "Test.Who") == ["bill", "dc1"]
            # plaintext is refused under verify_incoming
            plain = ConnPool(Dialer(reactor, "dc1", server=True), reactor)
            with pytest.raises(ConnectionClosed):
                await plain.rpc("dc1", "bill", addr2, "Status.Ping", use_tls=False)
            await plain.stopService()
        finally:
            await pool2.stopService()
            await svc2.stopService()
        # a server without the node SAN fails the dial through the gateway
        tls3 = TLSConfigurator(pki.settings("dc1", "alice", tmp_path / "alice",
                                            pair=pki.server("dc1")))
        svc3, pool3, addr3 = await start(reactor, tls3, "dc1", "alice", None)
        router.routes["alice.server.dc1.consul"] = addr3
        try:
            with pytest.raises(DialError, match=r"^TLS handshake with 127\.0\.0\.1:\d+ failed"):
                await nodes[1][3].rpc("dc1", "alice", "192.0.2.1:8300", "Status.Ping")
        finally:
            await pool3.stopService()
            await svc3.stopService()
    finally:
        for n in nodes:
            await n[3].stopService()
            await n[2].stopService()
        await gw.stopListening()
