"""The leader's reconciliation of LAN members into the catalog (clients included)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.agent.reconcile import MemberReconciler
from wanfedtx.gossip.serf import Member, MemberEvent, MemberStatus


def member(name: str, addr: str, status: MemberStatus = MemberStatus.ALIVE, *,
           server: bool = False, dc: str = "dc1") -> Member:
    tags = {"dc": dc, "id": f"id-{name}", "vsn": "2", "build": "1.8.0:abc"}
    tags.update({"role": "consul", "port": "8300"} if server else {"role": "node"})
    return Member(name, addr, 8301, tags, status, b"")


def setup() -> tuple[CatalogAgent, list[Member], MemberReconciler, Clock]:
    clock = Clock()
    catalog = CatalogAgent(node_name="s1", datacenter="dc1", advertise_addr="10.0.0.1",
                           server_port=8300, reactor=clock)
    members = [member("s1", "10.0.0.1", server=True), member("c1", "10.0.0.5"),
               member("other", "10.0.0.6", dc="dc2")]
    rec = MemberReconciler(catalog.endpoints, lambda: members, "s1", clock)
    return catalog, members, rec, clock


def checks(catalog: CatalogAgent, node: str) -> dict[str, Any]:
    _, rows = catalog.fsm.state.node_checks(None, node)
    return {c["CheckID"]: (c["Status"], c["Output"]) for c in rows}


def nodes(catalog: CatalogAgent) -> list[str]:
    return [n["Node"] for n in catalog.fsm.state.list_nodes(None)[1]]


def test_alive_members_registered_with_serf_health_and_servers_with_consul() -> None:
    catalog, _, rec, clock = setup()
    rec.startService()
    assert nodes(catalog) == ["c1", "s1"]  # dc2's agent is not ours
    assert checks(catalog, "c1") == {"serfHealth": ("passing", "Agent alive and reachable")}
    _, found = catalog.fsm.state.node_services(None, "s1")
    assert found is not None and [s["ID"] for s in found[1]] == ["consul"]
    _, found = catalog.fsm.state.node_services(None, "c1")
    assert found is not None and found[0]["Address"] == "10.0.0.5" and found[1] == []
    index = catalog.fsm.state.max_index("nodes", "services", "checks")
    clock.advance(60)  # a periodic pass with nothing to change writes nothing
    assert catalog.fsm.state.max_index("nodes", "services", "checks") == index
    rec.stopService()


def test_failed_then_left_member_and_reaped_catalog_nodes() -> None:
    catalog, members, rec, clock = setup()
    rec.startService()
    failed = member("c1", "10.0.0.5", MemberStatus.FAILED)
    rec.handle_event(MemberEvent("member-failed", (failed,)))
    assert checks(catalog, "c1") == {"serfHealth": ("critical", "Agent not live or unreachable")}
    left = member("c1", "10.0.0.5", MemberStatus.LEFT)
    members[1] = left  # gossip keeps left members until they are reaped
    rec.handle_event(MemberEvent("member-leave", (left,)))
    assert nodes(catalog) == ["s1"]
    # a node with serfHealth that gossip no longer knows is reaped on the periodic pass; a node
    # registered through the catalog API (no serfHealth) is left alone
    rec.handle_event(MemberEvent("member-join", (member("c2", "10.0.0.7"),)))
    catalog.rpc("Catalog.Register", {"Node": "ext", "Address": "192.0.2.1"})
    assert nodes(catalog) == ["c2", "ext", "s1"]
    clock.advance(60)
    assert nodes(catalog) == ["ext", "s1"]
    # the leader never deregisters itself
    rec.handle_event(MemberEvent("member-leave", (member("s1", "10.0.0.1", MemberStatus.LEFT,
                                                        server=True),)))
    assert "s1" in nodes(catalog)
    rec.stopService()
    assert not clock.getDelayedCalls()


def test_events_after_stop_are_ignored() -> None:
    catalog, _, rec, _ = setup()
    rec.handle_event(MemberEvent("member-join", (member("c9", "10.0.0.9"),)))
    assert nodes(catalog) == []


def test_leadership_is_announced_when_the_routine_starts() -> None:
    catalog, members, _, clock = setup()
    said: list[str] = []
    rec = MemberReconciler(catalog.endpoints, lambda: members, "s1", clock,
                           announce=lambda: said.append("consul:new-leader"))
    rec.startService()
    assert said == ["consul:new-leader"]
    rec.stopService()
