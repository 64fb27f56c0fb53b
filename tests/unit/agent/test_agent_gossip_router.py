"""GossipRouter: WAN servers per DC, this DC's LAN servers as a fallback, ServerAddress shape."""

from __future__ import annotations

from wanfedtx.agent.gossip import GossipRouter
from wanfedtx.gossip.pools import server_tags
from wanfedtx.gossip.serf import Member, MemberEvent, MemberStatus
from wanfedtx.rpc.interfaces import ServerAddress

VSN = b"\x01\x05\x02\x02\x05\x04"


def member(name: str, dc: str, status: MemberStatus = MemberStatus.ALIVE) -> Member:
    tags = server_tags(datacenter=dc, node_id="id", build="1.8.0:x", port=8300)
    return Member(name, "10.0.0.1", 8302, tags, status, VSN)


def test_router_from_wan_and_lan_events() -> None:
    r = GossipRouter("dc1")
    assert r.datacenters() == [] and r.servers_for_dc("dc1") == []
    r.lan.handle_event(MemberEvent("member-join", (member("a", "dc1"),)))
    assert r.datacenters() == ["dc1"]
    assert r.servers_for_dc("dc1") == [ServerAddress("a", "10.0.0.1:8300")]
    r.wan.handle_event(
        MemberEvent("member-join", (member("b.dc2", "dc2"), member("c.dc1", "dc1")))
    )
    assert r.datacenters() == ["dc1", "dc2"]
    assert r.servers_for_dc("dc2") == [ServerAddress("b", "10.0.0.1:8300")]
    # WAN knowledge wins for the local DC once present.
    assert r.servers_for_dc("dc1") == [ServerAddress("c", "10.0.0.1:8300")]
    failed = member("b.dc2", "dc2", MemberStatus.FAILED)
    r.wan.handle_event(MemberEvent("member-failed", (failed,)))
    # A failed server stays routable (tried last), as in Consul's router...
    assert r.datacenters() == ["dc1", "dc2"]
    assert r.servers_for_dc("dc2") == [ServerAddress("b", "10.0.0.1:8300")]
    # ...until it is reaped (or leaves).
    r.wan.handle_event(MemberEvent("member-reap", (failed,)))
    assert r.datacenters() == ["dc1"] and r.servers_for_dc("dc2") == []
    # Non-servers are ignored.
    tags = {"role": "node", "dc": "dc3"}
    client = Member("n.dc3", "10.0.0.2", 8302, tags, MemberStatus.ALIVE, VSN)
    r.wan.handle_event(MemberEvent("member-join", (client,)))
    assert r.datacenters() == ["dc1"]
