"""Real sockets on 127.0.0.1 with real TLS: pool, legacy dials, and three DCs via an SNI router."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import pytest_twisted
from rpc_support import OpenSSLTLS, SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock, deferLater

from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import (
    ALPNNotNegotiated,
    ConnectionClosed,
    DialError,
    NoDCPath,
    RemoteError,
)
from wanfedtx.rpc.forward import Forwarder, StaticLeader, StaticRouter
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.pool import ConnPool
from wanfedtx.rpc.protocol import RPCClientProtocol, RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI
from wanfedtx.tls.certs import CertAndKey

pytestmark = pytest.mark.integration


class Resolver:
    def __init__(self, gw: str | None) -> None:
        self.gw = gw

    def pick_gateway(self, dc: str) -> str | None:
        return self.gw


@attrs.define
class Node:
    name: str
    dc: str
    tls: OpenSSLTLS
    service: RPCPortService
    addr: str
    dialer: Dialer
    pool: ConnPool
    metrics: Registry

    async def stop(self) -> None:
        await self.pool.stopService()
        await self.service.stopService()


async def start_node(reactor: Any, ca: PKI, dc: str, name: str, *, pair: CertAndKey | None = None,
                     gateway: str | None = None, verify_incoming: bool = False,
                     pool_clock: Any = None) -> Node:
    tls = OpenSSLTLS(ca, pair or ca.server(dc, name), verify_incoming=verify_incoming)
    endpoints = default_endpoints()
    endpoints.register("Test.Who", lambda args: {"node": name, "dc": dc, "args": args})
    reg = HandlerRegistry()
    reg.register(RPCType.CONSUL, RPCHandler(endpoints, multi=False))
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(endpoints, multi=True))
    metrics = Registry()
    factory = RPCPortFactory(reg, reactor, tls, metrics=metrics)
    service = RPCPortService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), factory)
    service.startService()
    port = await service.when_listening()
    resolver = Resolver(gateway) if gateway else None
    dialer = Dialer(reactor, dc, server=True, tls=tls, gateway_resolver=resolver, timeout=5.0)
    pool = ConnPool(dialer, pool_clock or reactor)
    pool.startService()
    return Node(name, dc, tls, service, f"127.0.0.1:{port.getHost().port}", dialer, pool,
                metrics)


@pytest.fixture(scope="module")
def ca() -> PKI:
    return PKI()


@pytest_twisted.ensureDeferred
async def test_same_dc_pool_direct_plain_and_legacy_tls(reactor: Any, ca: PKI) -> None:
    a = await start_node(reactor, ca, "dc1", "a")
    b = await start_node(reactor, ca, "dc1", "b", verify_incoming=True)
    try:
        # legacy TLS: outer byte 3, TLS, inner byte 4 (verify_incoming accepts it)
        assert await a.pool.rpc("dc1", "b", b.addr, "Test.Who", 7) == {
            "node": "b", "dc": "dc1", "args": 7}
        assert a.pool.keys() == [f"b:{b.addr}"]
        assert await a.pool.ping("dc1", "b", b.addr) is True
        first = await a.pool.acquire("dc1", "b", b.addr)
        assert await a.pool.acquire("dc1", "b", b.addr) is first  # one pooled connection
        # plaintext type byte 4 against a server without verify_incoming
        b_plain = ConnPool(Dialer(reactor, "dc1", server=True, tls=None), reactor)
        assert await b_plain.rpc("dc1", "a", a.addr, "Status.Ping", use_tls=False) is None
        await b_plain.stopService()
        # plaintext against verify_incoming is refused, the call fails
        plain = ConnPool(Dialer(reactor, "dc1", server=True, tls=None), reactor)
        with pytest.raises(ConnectionClosed):
            await plain.rpc("dc1", "b", b.addr, "Status.Ping", use_tls=False)
        await plain.stopService()
        with pytest.raises(RemoteError, match=r"^rpc: can't find service Nope.Ping$"):
            await a.pool.rpc("dc1", "b", b.addr, "Nope.Ping")
        with pytest.raises(RemoteError, match=r"^rpc: can't find method Status.Nope$"):
            await a.pool.rpc("dc1", "b", b.addr, "Status.Nope")
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_three_dcs_all_six_directions_via_sni_router(reactor: Any, ca: PKI) -> None:
    router = SNIRouter(reactor)
    gw = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw_addr = f"127.0.0.1:{gw.getHost().port}"
    nodes = [await start_node(reactor, ca, dc, name, gateway=gw_addr)
             for dc, name in [("dc1", "bob"), ("dc2", "betty"), ("dc3", "bonnie")]]
    for n in nodes:
        router.routes[f"{n.name}.server.{n.dc}.consul"] = n.addr
    try:
        for a in nodes:
            for b in nodes:
                if a is b:
                    continue
                # the server address is only a pool key: an unroutable one proves the gateway
                reply = await a.pool.rpc(b.dc, b.name, "192.0.2.1:8300", "Test.Who", a.name)
                assert reply == {"node": b.name, "dc": b.dc, "args": a.name}
                assert f"{b.name}.server.{b.dc}.consul" in router.seen
        assert len(router.seen) == 6
        # forwarding to another DC counts rpc.cross-dc
        bob = nodes[0]
        fwd = Forwarder(bob.pool, "dc1", StaticLeader(ServerAddress("bob", bob.addr), "bob"),
                        StaticRouter({"dc2": [ServerAddress("betty", "192.0.2.1:8300")]}),
                        metrics=bob.metrics)
        assert (await fwd.forward_dc("dc2", "Test.Who", 1))["node"] == "betty"
        assert fwd.cross_dc.value(datacenter="dc2") == 1
        assert 'consul_rpc_cross_dc{datacenter="dc2"} 1' in bob.metrics.render()
        with pytest.raises(NoDCPath, match=r"^No path to datacenter$"):
            await fwd.forward_dc("dc7", "Status.Ping")
        assert (await fwd.forward_to_leader("Test.Who", 2))["node"] == "bob"
    finally:
        for n in nodes:
            await n.stop()
        await gw.stopListening()


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_dial_fails_without_node_san_or_for_wrong_dc(reactor: Any, ca: PKI) -> None:
    router = SNIRouter(reactor)
    gw = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw_addr = f"127.0.0.1:{gw.getHost().port}"
    src = await start_node(reactor, ca, "dc2", "betty", gateway=gw_addr)
    alice = await start_node(reactor, ca, "dc1", "alice", pair=ca.server("dc1", None))
    carl = await start_node(reactor, ca, "dc1", "carl", pair=ca.server("dc9", "carl"))
    router.routes["alice.server.dc1.consul"] = alice.addr
    router.routes["carl.server.dc1.consul"] = carl.addr
    try:
        for name in ("alice", "carl"):
            # hostname verification: the cert lacks <node>.server.dc1.consul. Current stacks fail
            # the handshake (DialError); the oldest supported one (tox twisted-oldest) reports it
            # as the connection closes. Either way no call reaches the server.
            with pytest.raises((DialError, ConnectionClosed), match=r"DNSMismatch"):
                await src.pool.rpc("dc1", name, "192.0.2.1:8300", "Status.Ping")
        # The refused connection leaves the pool once it has closed (poll: on the oldest stack
        # the close is reported after the failed call).
        for _ in range(100):
            if src.pool.keys() == []:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert src.pool.keys() == []
        # an ALPN the server does not offer is refused by the ALPN check
        proto = RPCClientProtocol(multi=True)
        bob = await start_node(reactor, ca, "dc1", "bob")
        try:
            with pytest.raises(ALPNNotNegotiated,
                               match=r'^could not negotiate ALPN protocol "foo/bar" with ""$'):
                await src.dialer.dial_alpn(bob.addr, "dc1", "bob", "foo/bar", proto)
            # the same dial with a served protocol works
            ok = RPCClientProtocol(multi=True)
            await src.dialer.dial_alpn(bob.addr, "dc1", "bob", "consul/rpc-multi", ok)
            assert await ok.call("Test.Who") == {"node": "bob", "dc": "dc1", "args": None}
            await ok.close()
        finally:
            await bob.stop()
    finally:
        for n in (src, alice, carl):
            await n.stop()
        await gw.stopListening()


@pytest_twisted.ensureDeferred
async def test_pool_reaps_idle_connections_after_two_minutes(reactor: Any, ca: PKI) -> None:
    clock = Clock()
    a = await start_node(reactor, ca, "dc1", "a", pool_clock=clock)
    b = await start_node(reactor, ca, "dc1", "b")
    try:
        await a.pool.rpc("dc1", "b", b.addr, "Status.Ping")
        (key,) = a.pool.keys()
        proto = await a.pool.acquire("dc1", "b", b.addr)
        clock.advance(60)
        await a.pool.rpc("dc1", "b", b.addr, "Status.Ping")  # used: idle timer restarts
        clock.advance(100)
        assert a.pool.keys() == [key]
        clock.advance(21)
        assert a.pool.keys() == []
        await proto.when_closed()
        assert proto.is_closed
        # a new call dials a new connection
        await a.pool.rpc("dc1", "b", b.addr, "Status.Ping")
        assert a.pool.keys() == [key]
    finally:
        await a.stop()
        await b.stop()
