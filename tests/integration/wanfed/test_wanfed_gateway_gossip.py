"""Two datacenters' WAN serf pools whose only path is a mesh-gateway SNI router (real sockets,
real TLS on 127.0.0.x).

primary: ``pri`` on 127.0.0.2; secondary: ``sec`` on 127.0.0.3 and ``sec2`` on 127.0.0.4. Each
server runs its WAN pool (``SerfService``) wrapped by ``wire_wan_pool`` and an RPC port whose
native-TLS ALPN dispatch feeds tunnelled gossip into that pool. The gateway routes by SNI only.
A spy under each wanfed transport proves no packet or stream ever goes directly to another DC.

The second test uses the project's own mesh gateways (``wanfedtx.gateway``), one per DC, routing
from snapshots built like the reference's xDS: the primary reaches the secondary through its local
gateway and the secondary's (two hops); the secondary reaches the primary's gateway directly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import pytest_twisted
from rpc_support import OpenSSLTLS, SNIRouter
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater

from wanfedtx.gateway.relay import RelaySettings
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.service import GatewayService
from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.interfaces import Address, IGossipTransport
from wanfedtx.gossip.pools import server_tags, wan_memberlist_config, wan_merge_check
from wanfedtx.gossip.serf import Event, MemberStatus, SerfConfig, UserEvent
from wanfedtx.gossip.service import SerfService
from wanfedtx.gossip.transport import NetTransport
from wanfedtx.metrics import Registry
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI
from wanfedtx.wanfed.resolver import StaticGatewayResolver
from wanfedtx.wanfed.wiring import WanfedWiring, wire_wan_pool

pytestmark = pytest.mark.integration


class DirectSpy:
    """Wraps the UDP/TCP transport and records every node it is asked to reach directly."""

    def __init__(self, inner: NetTransport) -> None:
        self.inner = inner
        self.targets: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write_to_address(self, packet: bytes, address: Address) -> float:
        self.targets.append(address.name)
        return self.inner.write_to_address(packet, address)

    def dial_address(self, address: Address, sink: Any, timeout: float) -> None:
        self.targets.append(address.name)
        self.inner.dial_address(address, sink, timeout)


@attrs.define
class Server:
    node: str
    dc: str
    host: str
    serf: SerfService
    rpc: RPCPortService
    rpc_addr: str
    wiring: WanfedWiring
    spy: list[DirectSpy]
    events: list[Event]
    running: bool = True

    @property
    def name(self) -> str:
        return f"{self.node}.{self.dc}"

    def status(self) -> dict[str, str]:
        s = self.serf.serf
        if s is None:
            return {}
        return {m.name: m.status.name.lower() for m in s.member_list()}

    def user_events(self) -> list[tuple[str, bytes]]:
        return [(e.name, e.payload) for e in self.events if isinstance(e, UserEvent)]

    async def kill(self) -> None:
        """Crash: no leave; sockets closed."""
        if self.running:
            self.running = False
            await self.serf.stopService()
            await self.rpc.stopService()


def fast(cfg: SerfConfig) -> None:
    lc = local_config()
    ml = cfg.memberlist
    ml.probe_interval, ml.probe_timeout = lc.probe_interval, 0.5
    ml.gossip_interval, ml.suspicion_mult = lc.gossip_interval, lc.suspicion_mult
    ml.push_pull_interval, ml.tcp_timeout = 5.0, 3.0
    ml.retransmit_mult, ml.indirect_checks = lc.retransmit_mult, 2
    cfg.reap_interval = 60.0


async def start_server(reactor: Any, ca: PKI, node: str, dc: str, host: str,
                       gateways: dict[str, list[str]]) -> Server:
    tls = OpenSSLTLS(ca, ca.server(dc, node))
    registry = HandlerRegistry()
    factory = RPCPortFactory(registry, reactor, tls, metrics=Registry())
    rpc = RPCPortService(TCP4ServerEndpoint(reactor, 0, interface=host), factory)
    ml = wan_memberlist_config(node, dc, True)
    ml.bind_addr, ml.bind_port = host, 0
    cfg = SerfConfig(
        f"{node}.{dc}", ml,
        tags=server_tags(datacenter=dc, node_id=f"00000000-0000-0000-0000-00000000000{len(node)}",
                         build="1.8.0:6adad711", use_tls=True),
        merge_check=wan_merge_check(dc, True),
    )
    fast(cfg)
    events: list[Event] = []
    resolver = StaticGatewayResolver(gateways, dc, random.Random(1))
    serf: SerfService | None = None
    wiring = wire_wan_pool(lambda: serf, registry, dc, tls, resolver, reactor, dial_timeout=5.0)
    spies: list[DirectSpy] = []

    def spied(t: NetTransport) -> IGossipTransport:
        spy = DirectSpy(t)
        spies.append(spy)
        return wiring.wrap(spy)  # type: ignore[arg-type]

    serf = SerfService(cfg, reactor, on_event=events.append, wrap_transport=spied,
                       rng=random.Random(len(node)))
    rpc.startService()
    port = await rpc.when_listening()
    serf.startService()
    return Server(node, dc, host, serf, rpc, f"{host}:{port.getHost().port}", wiring, spies,
                  events)


async def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    from twisted.internet import reactor

    clock: Any = reactor
    deadline = clock.seconds() + timeout
    while not cond():
        if clock.seconds() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await deferLater(clock, 0.05, lambda: None)


@pytest.fixture(scope="module")
def ca() -> PKI:
    return PKI()


@pytest_twisted.ensureDeferred
async def test_two_dcs_gossip_only_through_the_gateway(reactor: Any, ca: PKI) -> None:
    router = SNIRouter(reactor)
    gw_port = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw = f"127.0.0.1:{gw_port.getHost().port}"
    pri = await start_server(reactor, ca, "pri", "primary", "127.0.0.2", {"secondary": [gw]})
    sec = await start_server(reactor, ca, "sec", "secondary", "127.0.0.3", {"primary": [gw]})
    sec2 = await start_server(reactor, ca, "sec2", "secondary", "127.0.0.4", {"primary": [gw]})
    servers = [pri, sec, sec2]
    # The gateway knows the per-node SNIs and the primary's wildcard name, nothing else.
    router.routes.update({
        "pri.server.primary.consul": pri.rpc_addr,
        "server.primary.consul": pri.rpc_addr,
        "sec.server.secondary.consul": sec.rpc_addr,
        "sec2.server.secondary.consul": sec2.rpc_addr,
    })
    try:
        # The secondary joins the primary as Consul does: wildcard name, placeholder IP.
        assert await sec.serf.join(["*.primary/192.0.2.2"]) == 1
        assert "server.primary.consul" in router.seen
        # sec2 joins its own DC directly (same DC: plain UDP/TCP).
        assert await sec2.serf.join([f"sec.secondary/127.0.0.3:{sec.serf.port}"]) == 1
        want = {"pri.primary": "alive", "sec.secondary": "alive", "sec2.secondary": "alive"}
        for s in servers:
            await until(lambda s=s: s.status() == want, f"{s.name} sees all three alive")
        # Per-node SNIs are used in both directions (the primary probes sec2 too).
        await until(lambda: {"pri.server.primary.consul", "sec.server.secondary.consul",
                             "sec2.server.secondary.consul"} <= set(router.seen),
                    "per-node SNIs of all three servers")

        # A user event from the primary reaches both secondaries (and vice versa).
        assert pri.serf.serf is not None and sec2.serf.serf is not None
        pri.serf.serf.user_event("deploy", b"v1")
        sec2.serf.serf.user_event("rollback", b"v0")
        for s in servers:
            await until(lambda s=s: {("deploy", b"v1"), ("rollback", b"v0")}
                        <= set(s.user_events()), f"{s.name} got both user events")

        # A crashed secondary server is seen failed from the primary, across the gateway.
        await sec2.kill()
        for s in (pri, sec):
            await until(lambda s=s: s.status().get("sec2.secondary") == "failed",
                        f"{s.name} sees sec2 failed", timeout=30.0)
        assert pri.status()["sec.secondary"] == "alive"
        assert sec.status()["pri.primary"] == "alive"

        # Nothing ever went directly to another datacenter.
        for s in servers:
            for spy in s.spy:
                other = [n for n in spy.targets if not n.endswith("." + s.dc)]
                assert other == [], f"{s.name} reached {other} without the gateway"
        assert pri.wiring.transport is not None
        assert pri.wiring.transport.pool.idle_count() >= 1  # pooled packet conns to sec
        assert MemberStatus.FAILED.name.lower() == "failed"
    finally:
        for s in servers:
            await s.kill()
        await gw_port.stopListening()


def gateway_snapshot(dc: str, servers: list[Server], gws: dict[str, tuple[str, int]]) -> Any:
    """The routes of ``dc``'s gateway; ``gws`` holds every DC's gateway, this one's included (as
    in the federation states: the local DC then gets its ``server.<dc>.<domain>`` cluster)."""
    inputs = {
        "datacenter": dc,
        "trust_domain": "11111111-2222-3333-4444-555555555555.consul",
        "wan_federation": True,
        "servers": [{"node": s.node, "address": s.host, "port": int(s.rpc_addr.split(":")[1])}
                    for s in servers],
        "gateways": {gdc: [{"address": a, "port": p}] for gdc, (a, p) in gws.items()},
    }
    return routes_to_snapshot({"inputs": inputs}, "127.0.0.1", 0)


@pytest_twisted.ensureDeferred
async def test_two_hops_through_the_projects_mesh_gateways(reactor: Any, ca: PKI) -> None:
    empty = gateway_snapshot("primary", [], {})
    gws = []
    for _ in range(2):
        g = GatewayService(reactor, ("127.0.0.1", 0), empty,
                           settings=RelaySettings(data_path="twisted"), rng=random.Random(1),
                           reload_interval=None)
        g.startService()
        gws.append(g)
    gw_pri, gw_sec = gws
    a_pri = f"127.0.0.1:{gw_pri.address[1]}"
    # Resolvers as the gateway locator picks: the primary by its gateway, others via local ones.
    pri = await start_server(reactor, ca, "pri", "primary", "127.0.0.2", {"secondary": [a_pri]})
    sec = await start_server(reactor, ca, "sec", "secondary", "127.0.0.3", {"primary": [a_pri]})
    every = {"primary": gw_pri.address, "secondary": gw_sec.address}
    gw_pri.set_snapshot(gateway_snapshot("primary", [pri], every))
    gw_sec.set_snapshot(gateway_snapshot("secondary", [sec], every))
    servers = [pri, sec]
    try:
        assert await sec.serf.join(["*.primary/192.0.2.2"]) == 1
        want = {"pri.primary": "alive", "sec.secondary": "alive"}
        for s in servers:
            await until(lambda s=s: s.status() == want, f"{s.name} sees both alive")
        assert pri.serf.serf is not None
        pri.serf.serf.user_event("deploy", b"v2")
        await until(lambda: ("deploy", b"v2") in sec.user_events(), "sec got the user event")
        # primary -> secondary went through both gateways: pri's gateway relayed to the remote
        # gateway cluster, and the secondary's gateway to sec itself.
        await until(lambda: gw_pri.stats.clusters.get("server.secondary.consul") is not None
                    and gw_sec.stats.clusters.get("sec.server.secondary.consul") is not None,
                    "both hops used")
        assert gw_pri.stats.clusters["server.secondary.consul"].upstream_cx_total >= 1
        assert gw_sec.stats.clusters["sec.server.secondary.consul"].upstream_cx_total >= 1
        for s in servers:
            for spy in s.spy:
                assert [n for n in spy.targets if not n.endswith("." + s.dc)] == []
    finally:
        for s in servers:
            await s.kill()
        for g in gws:
            await g.stopService()
