"""The differences an audit found against the reference, each pinned by a test that fails when
it breaks: leader routines without WAN federation, ``PrimaryModifyIndex`` taken from the
primary's ``ModifyIndex``, the locator's sorted lists."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
from federation_support import Net, gateway
from test_federation_gateway_locator import gw, locator, state
from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.federation.antientropy import FederationStateAntiEntropy, FederationStatePruning
from wanfedtx.federation.replication import FederationStateReplicator
from wanfedtx.federation.server import FederationServer, FederationTiming
from wanfedtx.federation.structs import FederationState
from wanfedtx.state import StateStore

FAST = FederationTiming(
    replication_rate=100, replication_burst=100, replication_apply_limit=1_000_000
)


def _agent(tmp: Path, dc: str, primary: str) -> Agent:
    rt = load(LoadOptions(dev=True, flags={
        "node_name": f"s-{dc}", "datacenter": dc, "primary_datacenter": primary,
        "server": True, "data_dir": str(tmp / dc),
    })).runtime
    assert not rt.connect_mesh_gateway_wan_federation_enabled
    return Agent(rt, MemoryReactorClock())


def test_leader_routines_run_without_wan_federation(tmp_path: Path) -> None:
    """As the reference: replication in a secondary whose primary is set, anti-entropy in every
    datacenter, pruning in the primary, whatever the wanfed option says."""
    secondary = _agent(tmp_path, "secondary", "primary")
    assert secondary.federation is not None and secondary.federation.leader is not None
    kinds = [type(r) for r in secondary.federation.build_routines()]
    assert kinds == [FederationStateReplicator, FederationStateAntiEntropy]
    primary = _agent(tmp_path, "primary", "primary")
    assert primary.federation is not None and primary.federation.leader is not None
    kinds = [type(r) for r in primary.federation.build_routines()]
    assert kinds == [FederationStateAntiEntropy, FederationStatePruning]


def test_replicated_states_carry_the_primarys_modify_index(net: Net) -> None:
    """``PrimaryModifyIndex`` is the primary's ``ModifyIndex``: not the secondary's raft index,
    and not whatever ``PrimaryModifyIndex`` the primary's copy carries."""

    def make(cat: Any, primary: str) -> FederationServer:
        return FederationServer(cat, primary, leader_routines=True, anti_entropy=False,
                                timing=FAST, rng=random.Random(3))

    net.add("dc1", "dc1", make=make)
    net.add("dc2", "dc1", make=make)
    store = net.servers["dc1"].fsm.state
    # Written far above the secondary's raft indexes, with PrimaryModifyIndex values that are
    # neither 0 nor the ModifyIndex (so neither a missing nor a copied field passes).
    store.federation_state_set(
        500, attrs.evolve(FederationState("alt-a", (gateway("g1", "10.0.0.1", 443),)),
                          primary_modify_index=3))
    store.federation_state_set(
        733, attrs.evolve(FederationState("alt-b", (gateway("g2", "10.0.0.2", 443),)),
                          primary_modify_index=0))
    for cat in net.servers.values():
        cat.startService()
    rows: dict[str, FederationState] = {}
    for _ in range(20_000):
        _, listed = net.servers["dc2"].fsm.state.federation_state_list(None)
        rows = {r.datacenter: r for r in listed}
        if {"alt-a", "alt-b"} <= rows.keys():
            break
        net.clock.advance(0.001)
    assert rows["alt-a"].primary_modify_index == 500
    assert rows["alt-b"].primary_modify_index == 733
    assert rows["alt-a"].modify_index < 500  # the secondary's own raft index
    for cat in net.servers.values():
        cat.stopService()


def test_locator_lists_are_sorted_whatever_the_catalog_order() -> None:
    store = StateStore()
    store.federation_state_set(1, state(
        "dc1", gw("c", "9.9.9.9", 443), gw("a", "1.1.1.1", 8443), gw("b", "1.1.1.1", 443)))
    store.federation_state_set(2, state(
        "dc2", gw("z", "10.0.0.9", 443), gw("y", "10.0.0.10", 443), gw("x", "10.0.0.1", 443)))
    clock = task.Clock()
    secondary = locator(store, "dc2", clock)
    secondary.startService()
    clock.advance(0)
    assert secondary.primary_gateways == ["1.1.1.1:443", "1.1.1.1:8443", "9.9.9.9:443"]
    # Go's sort.Strings on "host:port": byte order, so ":" (0x3a) sorts after "0"
    assert secondary.local_gateways == ["10.0.0.10:443", "10.0.0.1:443", "10.0.0.9:443"]
    secondary.refresh_primary_gateway_fallback_addresses(["gw-b:1", "gw-a:2", "gw-c:0"])
    assert secondary.primary_gateway_fallback_addresses() == ["gw-a:2", "gw-b:1", "gw-c:0"]
    # the same gateways in another order are no change (no new list, no log line)
    before = secondary.primary_gateways
    secondary.update_from_state([
        state("dc1", gw("b", "1.1.1.1", 443), gw("c", "9.9.9.9", 443), gw("a", "1.1.1.1", 8443)),
        state("dc2", gw("x", "10.0.0.1", 443), gw("z", "10.0.0.9", 443),
              gw("y", "10.0.0.10", 443)),
    ])
    assert secondary.primary_gateways is before
    assert secondary.local_gateways == ["10.0.0.10:443", "10.0.0.1:443", "10.0.0.9:443"]
    # the pick indexes the sorted list: same rng state, same choice
    secondary.rng = random.Random(11)
    picks = [secondary.pick_gateway("dc1") for _ in range(5)]
    rng = random.Random(11)
    want = ["1.1.1.1:443", "1.1.1.1:8443", "9.9.9.9:443"]
    assert picks == [want[rng.randrange(3)] for _ in range(5)]
    secondary.stopService()
