"""Consul pool helpers: WAN names, server tags/parsing, merge check, router (sim network)."""

from __future__ import annotations

import random

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

from wanfedtx.gossip.errors import GossipError
from wanfedtx.gossip.pools import (
    Router,
    parse_server,
    server_tags,
    split_node_name,
    wan_memberlist_config,
    wan_merge_check,
)
from wanfedtx.gossip.serf import Event, Member, MemberStatus, Serf, SerfConfig
from wanfedtx.gossip.simnet import SimNetwork, run_for


def test_split_node_name() -> None:
    assert split_node_name("foo.bar") == ("foo", "bar")
    assert split_node_name(".bar") == ("", "bar")
    for bad in ("", "foo", "foo.bar.baz"):
        with pytest.raises(GossipError, match=f"node name does not encode a datacenter: {bad}$"):
            split_node_name(bad)


def member(name: str, tags: dict[str, str]) -> Member:
    return Member(name, "127.0.0.1", 8302, tags, MemberStatus.ALIVE, b"")


def test_server_tags_roundtrip_and_validation() -> None:
    tags = server_tags(datacenter="dc2", node_id="uuid-1", build="1.8.0:abcdef", bootstrap_expect=3)
    assert tags["role"] == "consul" and tags["segment"] == "" and tags["ft_fs"] == "1"
    srv = parse_server(member("s1.dc2", tags))
    assert srv is not None
    assert (srv.short_name, srv.datacenter, srv.port, srv.expect) == ("s1", "dc2", 8300, 3)
    assert srv.rpc_addr == "127.0.0.1:8300"
    assert parse_server(member("c", {"role": "node"})) is None
    for key, val in (
        ("build", "dev"),
        ("port", "x"),
        ("vsn", ""),
        ("expect", "many"),
        ("ft_fs", "y"),
    ):
        assert parse_server(member("s1.dc2", {**tags, key: val})) is None, key


def test_wan_config_disables_tcp_pings_cross_dc_only() -> None:
    cfg = wan_memberlist_config("s1", "dc1")
    assert cfg.name == "s1.dc1" and cfg.require_node_names
    assert cfg.probe_interval == 5.0 and cfg.suspicion_mult == 6
    f = cfg.disable_tcp_pings_for_node
    assert f is not None
    assert f("s2.dc2") is True
    assert f("s2.dc1") is False
    assert f("weird") is False


def test_wan_pool_router_and_merge_check() -> None:
    clock = task.Clock()
    net = SimNetwork(clock)
    router = Router(random.Random(1))
    pools: list[Serf] = []
    for i, dc in enumerate(["dc1", "dc1", "dc2", "dc3"]):
        cfg = wan_memberlist_config(f"s{i}", dc)
        cfg.probe_interval, cfg.probe_timeout, cfg.gossip_interval = 1.0, 0.2, 0.1
        cfg.bind_port = 8302 + i
        events: list[Event] = []
        s = Serf(
            SerfConfig(
                cfg.name,
                cfg,
                tags=server_tags(datacenter=dc, node_id=f"id{i}", build="1.8.0:abc"),
                merge_check=wan_merge_check(dc),
            ),
            net.transport("127.0.0.1", 8302 + i),
            clock,
            random.Random(i),
            router.handle_event if i == 0 else events.append,
        )
        s.start()
        pools.append(s)
    for i, s in enumerate(pools[1:], 1):
        res: list[object] = []
        Deferred.fromCoroutine(s.join(["s0.dc1/127.0.0.1:8302"])).addBoth(res.append)
        run_for(clock, 0.5)
        assert res == [1], (i, res)
    run_for(clock, 20)
    assert router.datacenters() == ["dc1", "dc2", "dc3"]
    assert [s.name for s in router.servers("dc1")] == ["s0.dc1", "s1.dc1"]
    route = router.find_route("dc2")
    assert route is not None and route.name == "s2.dc2"
    assert router.find_route("dc9") is None

    # A client agent (not a server) may not merge into the WAN pool: the servers refuse it.
    ccfg = wan_memberlist_config("c1", "dc1")
    ccfg.bind_port = 8400
    client = Serf(
        SerfConfig(ccfg.name, ccfg, tags={"role": "node", "dc": "dc1"}),
        net.transport("127.0.0.1", 8400),
        clock,
        random.Random(9),
    )
    client.start()
    Deferred.fromCoroutine(client.join(["s0.dc1/127.0.0.1:8302"])).addErrback(lambda f: None)
    run_for(clock, 3)
    assert "c1.dc1" not in pools[0].members
    assert "c1.dc1" not in {s.name for dc in router.datacenters() for s in router.servers(dc)}
    # ...while a server's own merge check refuses a pool that contains a client.
    assert wan_merge_check("dc1")([member("c1.dc1", {"role": "node"})]) == (
        "Member 'c1.dc1' is not a server"
    )
    client.memberlist.shutdown_done = True
    net.transports["127.0.0.1:8400"].up = False

    # A server that crashes stays routable, as in Consul's router (only leave or reap removes
    # it); it is tried after the servers gossip still sees alive.
    net.transports["127.0.0.1:8304"].up = False
    run_for(clock, 60)
    assert router.datacenters() == ["dc1", "dc2", "dc3"]
    assert pools[0].members["s2.dc2"].status != MemberStatus.ALIVE
    route = router.find_route("dc2")
    assert route is not None and route.name == "s2.dc2"


def test_router_keeps_failed_servers_last_and_drops_left_ones() -> None:
    from wanfedtx.gossip.pools import Router
    from wanfedtx.gossip.serf import MemberEvent

    def server(name: str, status: MemberStatus) -> Member:
        tags = server_tags(datacenter="dc2", node_id=name, build="1.8.0:x", bootstrap_expect=1)
        return Member(f"{name}.dc2", "127.0.0.1", 8302, tags, status, b"")

    router = Router(random.Random(1))
    both = (server("a", MemberStatus.ALIVE), server("b", MemberStatus.ALIVE))
    router.handle_event(MemberEvent("member-join", both))
    router.handle_event(MemberEvent("member-failed", (server("a", MemberStatus.FAILED),)))
    assert [s.name for s in router.servers("dc2")] == ["b.dc2", "a.dc2"]
    picks = {getattr(router.find_route("dc2"), "name", None) for _ in range(20)}
    assert picks == {"b.dc2"}
    router.handle_event(MemberEvent("member-leave", (server("b", MemberStatus.LEFT),)))
    assert [s.name for s in router.servers("dc2")] == ["a.dc2"]
    route = router.find_route("dc2")
    assert route is not None and route.name == "a.dc2"  # only a failed one left: still used
    router.handle_event(MemberEvent("member-join", (server("a", MemberStatus.ALIVE),)))
    router.handle_event(MemberEvent("member-reap", (server("a", MemberStatus.FAILED),)))
    assert router.datacenters() == []


def test_flood_join_address_and_bootstrap() -> None:
    from wanfedtx.gossip.pools import bootstrap_servers, flood_join_address

    tags = server_tags(datacenter="dc1", node_id="x", build="1.8.0:a", wan_join_port=8302)
    assert flood_join_address(member("s1", tags), "dc1") == "s1.dc1/127.0.0.1:8302"
    no_port = {k: v for k, v in tags.items() if k != "wan_join_port"}
    assert flood_join_address(member("s1", no_port), "dc1") is None
    assert flood_join_address(member("c1", {"role": "node"}), "dc1") is None

    t3 = server_tags(datacenter="dc1", node_id="x", build="1.8.0:a", bootstrap_expect=3)
    ms = [member(f"s{i}", t3) for i in range(3)]
    assert bootstrap_servers(ms[:2], 3) is None
    got = bootstrap_servers(ms, 3)
    assert got is not None and [s.name for s in got] == ["s0", "s1", "s2"]
    t2 = {**t3, "expect": "2"}
    assert bootstrap_servers([*ms, member("odd", t2)], 3) is None
    boot = server_tags(datacenter="dc1", node_id="x", build="1.8.0:a", bootstrap=True)
    assert bootstrap_servers([*ms, member("b", boot)], 3) is None
