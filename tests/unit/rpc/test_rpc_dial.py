"""Dialer routing rule and guards, pool node-name errors, dial timeout."""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import OpenSSLTLS, server_tls
from twisted.internet.testing import MemoryReactorClock

from wanfedtx.hostport import split_host_port
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.errors import DCNotAvailable, DialError, NodeNameRequired, NoLeader
from wanfedtx.rpc.forward import Forwarder, StaticRouter
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.rpc.pool import ConnPool, pool_key
from wanfedtx.rpc.protocol import RPCClientProtocol
from wanfedtx.testing.pki import PKI


class Resolver:
    def __init__(self, gw: str | None) -> None:
        self.gw = gw
        self.asked: list[str] = []

    def pick_gateway(self, dc: str) -> str | None:
        self.asked.append(dc)
        return self.gw


@pytest.fixture(scope="module")
def ca() -> PKI:
    return PKI()


def failure_of(d: Any) -> Exception:
    errs: list[Exception] = []
    d.addErrback(lambda f: errs.append(f.value))
    assert errs, "expected the Deferred to have failed"
    return errs[0]


def via(dialer: Dialer, dc: str = "dc2", node: str = "n", t: RPCType = RPCType.MULTIPLEX_V2
        ) -> Exception:
    return failure_of(dialer.dial_via_mesh_gateway(dc, node, t, RPCClientProtocol(multi=True)))


def test_gateway_guards_in_order(ca: PKI) -> None:
    r = MemoryReactorClock()
    tls = server_tls(ca, "dc1", "a")
    gw = Resolver("127.0.0.1:4431")
    cases = [
        (Dialer(r, "dc1", server=False, tls=tls, gateway_resolver=gw),
         "must dial via mesh gateways from a server agent"),
        (Dialer(r, "dc1", server=True, tls=tls), "gatewayResolver is nil"),
        (Dialer(r, "dc1", server=True, gateway_resolver=gw), "tlsConfigurator is nil"),
    ]
    for dialer, msg in cases:
        assert str(via(dialer)) == msg
    d = Dialer(r, "dc1", server=True, tls=tls, gateway_resolver=gw)
    assert str(via(d, dc="dc1")) == "cannot dial servers in the same datacenter via a mesh gateway"
    no_cert = Dialer(r, "dc1", server=True, tls=OpenSSLTLS(ca, None), gateway_resolver=gw)
    assert str(via(no_cert)) == "cannot dial via a mesh gateway when outgoing TLS is disabled"
    for t in (RPCType.MULTIPLEX, RPCType.TLS, RPCType.TLS_INSECURE):
        assert str(via(d, t=t)) == f"rpc type {int(t)} cannot be routed through a mesh gateway"
    e = via(Dialer(r, "dc1", server=True, tls=tls, gateway_resolver=Resolver(None)))
    assert isinstance(e, DCNotAvailable) and str(e) == "Remote DC has no server currently reachable"
    assert r.tcpClients == []  # no guard let a dial through
    # ALPN wrapper input checks
    for args, msg in [(("", "n", "x"), "target datacenter"), (("dc2", "", "x"), "target node"),
                      (("dc2", "n", ""), "target alpn protocol")]:
        with pytest.raises(DialError, match=f"^cannot dial using ALPN-RPC without a {msg}$"):
            d.alpn_creator(*args)


def test_routing_rule_other_dc_goes_to_gateway(ca: PKI) -> None:
    r = MemoryReactorClock()
    gw = Resolver("127.0.0.1:4431")
    d = Dialer(r, "dc1", server=True, tls=server_tls(ca, "dc1", "a"), gateway_resolver=gw)
    d.dial("dc2", "b", "10.0.0.9:8300", RPCType.MULTIPLEX_V2, True, RPCClientProtocol(multi=True))
    d.dial("dc1", "c", "127.0.0.3:8300", RPCType.MULTIPLEX_V2, True, RPCClientProtocol(multi=True))
    assert [(h, p) for h, p, *_ in r.tcpClients] == [("127.0.0.1", 4431), ("127.0.0.3", 8300)]
    assert gw.asked == ["dc2"]
    # a client agent never uses the gateway, even with a resolver
    c = Dialer(r, "dc1", server=False, tls=server_tls(ca, "dc1", "a"), gateway_resolver=gw)
    c.dial("dc2", "b", "127.0.0.9:8300", RPCType.MULTIPLEX_V2, True, RPCClientProtocol(multi=True))
    assert r.tcpClients[-1][:2] == ("127.0.0.9", 8300)


def test_insecure_dial_refused_across_dcs(ca: PKI) -> None:
    r = MemoryReactorClock()
    tls = server_tls(ca, "dc1", "a")
    d = Dialer(r, "dc1", server=True, tls=tls)
    e = failure_of(d.dial_insecure("dc2", "b", "127.0.0.1:8300",
                                   tls.client_creator("server.dc2.consul", None),
                                   RPCClientProtocol(multi=False)))
    assert str(e) == "insecure dialing prohibited between datacenters"


def test_dial_timeout_covers_connect(ca: PKI) -> None:
    r = MemoryReactorClock()
    d = Dialer(r, "dc1", server=True, tls=None, timeout=10.0)
    res = d.dial("dc1", "b", "127.0.0.1:8300", RPCType.MULTIPLEX_V2, False,
                 RPCClientProtocol(multi=True))
    r.advance(9.9)
    assert not res.called
    r.advance(0.2)
    assert "i/o timeout after 10s" in str(failure_of(res))


def test_pool_requires_node_names(ca: PKI) -> None:
    pool = ConnPool(Dialer(MemoryReactorClock(), "dc1", server=True), MemoryReactorClock())
    assert str(failure_of(pool.rpc("dc1", "", "127.0.0.1:8300", "Status.Ping"))) == (
        "pool: ConnPool.RPC requires a node name")
    assert str(failure_of(pool.acquire("dc1", "", "127.0.0.1:8300"))) == (
        "pool: ConnPool.acquire requires a node name")
    assert str(failure_of(pool._get_new_conn("dc1", "", "127.0.0.1:8300", True))) == (
        "pool: ConnPool.getNewConn requires a node name")
    assert str(failure_of(pool.ping("dc1", "", "127.0.0.1:8300"))) == (
        "pool: ConnPool.Ping requires a node name")
    with pytest.raises(NodeNameRequired):
        pool.clear_conn("", "127.0.0.1:8300")
    assert pool_key("bob", "127.0.0.1:8300") == "bob:127.0.0.1:8300"


def test_concurrent_acquires_share_one_dial() -> None:
    r = MemoryReactorClock()
    pool = ConnPool(Dialer(r, "dc1", server=True), r)
    pool.acquire("dc1", "b", "127.0.0.1:8300", use_tls=False)
    pool.acquire("dc1", "b", "127.0.0.1:8300", use_tls=False)
    pool.acquire("dc1", "c", "127.0.0.1:8300", use_tls=False)
    assert len(r.tcpClients) == 2


def test_forward_errors() -> None:
    class NoLeaderYet:
        def is_leader(self) -> bool:
            return False

        def leader(self) -> ServerAddress | None:
            return None

    r = MemoryReactorClock()
    fwd = Forwarder(ConnPool(Dialer(r, "dc1", server=True), r), "dc1", NoLeaderYet(),
                    StaticRouter({}))
    e = failure_of(fwd.forward_to_leader("Status.Ping"))
    assert isinstance(e, NoLeader) and str(e) == "No cluster leader"
    fwd2 = Forwarder(fwd.pool, "dc2", NoLeaderYet(), StaticRouter(
        {"dc3": [ServerAddress("c", "127.0.0.1:1")], "dc1": [ServerAddress("a", "127.0.0.1:2")],
         "dc9": []}))
    assert fwd2.datacenters() == ["dc1", "dc2", "dc3"]


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:8300") == ("127.0.0.1", 8300)
    assert split_host_port("[::1]:8300") == ("::1", 8300)
    for bad in ("nohost", ":1", "h:"):
        with pytest.raises(ValueError):
            split_host_port(bad)


def test_legacy_tls_without_wrapper_fails(ca: PKI) -> None:
    class NoWrapper(OpenSSLTLS):
        def outgoing_rpc_creator(self, dc: str) -> Any:
            return None

    d = Dialer(MemoryReactorClock(), "dc1", server=True, tls=NoWrapper(ca, ca.server("dc1", "a")))
    e = failure_of(d.dial("dc1", "b", "127.0.0.1:8300", RPCType.MULTIPLEX_V2, True,
                          RPCClientProtocol(multi=True)))
    assert str(e) == "TLS requested but wrapper is nil"
