"""Replication of federation states from the primary into a secondary."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from federation_support import Net, gateway, result
from twisted.logger import globalLogPublisher

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation.loop import retry_wait
from wanfedtx.federation.replication import FederationStateReplicator, diff_remote_and_local
from wanfedtx.federation.server import FederationServer, FederationTiming
from wanfedtx.federation.structs import FederationState

FAST = FederationTiming(
    replication_rate=100, replication_burst=100, replication_apply_limit=1_000_000
)


@pytest.fixture
def messages() -> Iterator[list[str]]:
    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        fmt = event.get("log_format")
        if isinstance(fmt, str):
            seen.append(fmt.split(":")[0])

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def replicating(timing: FederationTiming = FAST) -> Any:
    def make(cat: CatalogAgent, primary: str) -> FederationServer:
        return FederationServer(
            cat,
            primary,
            leader_routines=True,
            anti_entropy=False,
            timing=timing,
            rng=random.Random(3),
        )

    return make


def comparable(net: Net, dc: str) -> list[dict[str, Any]]:
    _, rows = net.servers[dc].fsm.state.federation_state_list(None)
    wire = [r.to_wire() for r in rows]
    return [{k: v for k, v in r.items() if k not in ("CreateIndex", "ModifyIndex")} for r in wire]


def converge(net: Net, step: float = 0.001, limit: int = 20_000) -> int:
    for i in range(limit):
        if comparable(net, "dc1") == comparable(net, "dc2"):
            return i
        net.clock.advance(step)
    raise AssertionError("the secondary did not converge")


def replicator(net: Net) -> FederationStateReplicator:
    (r,) = [x for x in net.feds["dc2"].routines if isinstance(x, FederationStateReplicator)]
    return r


def apply(net: Net, dc: str, op: str, state: dict[str, Any]) -> Any:
    return result(net.servers[dc].rpc("FederationState.Apply", {"Op": op, "State": state}))


def start(net: Net, timing: FederationTiming = FAST) -> None:
    net.add("dc1", "dc1", make=replicating(timing))
    net.add("dc2", "dc1", make=replicating(timing))
    for cat in net.servers.values():
        cat.startService()


def stop(net: Net) -> None:
    for cat in net.servers.values():
        cat.stopService()


def test_diff_is_a_sorted_merge_walk() -> None:
    def row(dc: str, idx: int) -> FederationState:
        return FederationState(dc, modify_index=idx)

    local = [row("c", 1), row("a", 1), row("e", 1)]
    remote = [row("b", 5), row("a", 3), row("c", 9), row("f", 2)]
    deletions, updates = diff_remote_and_local(local, remote, 4)
    assert deletions == ["e"]
    assert [u.datacenter for u in updates] == ["b", "c", "f"]  # a: 3 <= 4, not changed
    deletions, updates = diff_remote_and_local(local, remote, 0)
    assert [u.datacenter for u in updates] == ["a", "b", "c", "f"]
    assert diff_remote_and_local([row("A", 1)], [row("a", 1)], 1) == ([], [])


def test_fifty_states_are_created_updated_and_deleted_in_the_secondary(net: Net) -> None:
    start(net)
    names = [f"alt-dc{i}" for i in range(1, 51)]
    for i, dc in enumerate(names):
        gws = [gateway(f"gw{j}", f"10.0.{i}.{j}", 443, dc=dc) for j in range(2)]
        apply(net, "dc1", "upsert", {"Datacenter": dc, "MeshGateways": gws})
    converge(net)
    assert len(comparable(net, "dc2")) == 50
    rows = net.servers["dc2"].fsm.state.federation_state_list(None)[1]
    primary = {r.datacenter: r for r in net.servers["dc1"].fsm.state.federation_state_list(None)[1]}
    assert all(r.primary_modify_index == primary[r.datacenter].modify_index for r in rows)
    for i, dc in enumerate(names):
        gws = [gateway(f"gw{j}", f"10.0.{i}.{j}", 443, dc=dc) for j in range(3)]
        apply(net, "dc1", "upsert", {"Datacenter": dc, "MeshGateways": gws})
    converge(net)
    assert all(len(r["MeshGateways"]) == 3 for r in comparable(net, "dc2"))
    for dc in names:
        apply(net, "dc1", "delete", {"Datacenter": dc})
    converge(net)
    assert comparable(net, "dc2") == []
    stop(net)


def test_delete_sent_to_the_secondary_is_forwarded_then_replicated(net: Net) -> None:
    start(net)
    apply(net, "dc1", "upsert", {"Datacenter": "dc3"})
    converge(net)
    assert len(comparable(net, "dc2")) == 1
    apply(net, "dc2", "delete", {"Datacenter": "dc3"})
    assert comparable(net, "dc1") == []
    converge(net)
    assert comparable(net, "dc2") == []
    stop(net)


def test_errors_reset_the_index_and_back_off(net: Net, messages: list[str]) -> None:
    net.down.add("dc1")
    start(net, FederationTiming())  # the reference's rates: 1/s, burst 5, 100 applies/s
    r = replicator(net)
    assert (r.rounds, r.failures) == (1, 1)
    assert "replication error (will retry if still leader)" in messages
    net.clock.advance(0.99)
    assert r.rounds == 1
    net.clock.advance(0.11)  # 1 s plus at most 10 % jitter
    assert (r.rounds, r.failures) == (2, 2)
    net.clock.advance(1.99)
    assert r.rounds == 2
    net.clock.advance(0.21)  # 2 s (+10 %)
    assert (r.rounds, r.failures) == (3, 3)
    net.down.clear()
    apply(net, "dc1", "upsert", {"Datacenter": "dc1"})
    net.clock.advance(4.4)  # 4 s (+10 %): this round succeeds
    net.clock.advance(0.01)  # the 10 ms pause after the apply
    assert r.failures == 0 and r.last_remote_index > 0
    assert comparable(net, "dc2") == comparable(net, "dc1")
    stop(net)


def test_retry_wait_doubles_up_to_two_minutes() -> None:
    rng = random.Random(1)
    for n, base in [(1, 1), (2, 2), (3, 4), (7, 64)]:
        wait = retry_wait(n, rng)
        assert base <= wait <= base * 1.1
    assert retry_wait(8, rng) == 120.0 and retry_wait(40, rng) == 120.0


def test_remote_index_moving_backwards_forces_a_full_sync(net: Net, messages: list[str]) -> None:
    start(net)
    for dc in ("dc3", "dc4", "dc5"):
        apply(net, "dc1", "upsert", {"Datacenter": dc})
    converge(net)
    net.clock.advance(0.01)  # the round ends after its last apply's pause
    assert replicator(net).last_remote_index == 4  # "consul" registered at 1, then 2..4
    # The primary is replaced by a fresh one (its raft index starts again from 1).
    net.servers["dc1"].stopService()
    net.add("dc1", "dc1", make=replicating())
    net.servers["dc1"].startService()
    apply(net, "dc1", "upsert", {"Datacenter": "dc4"})
    # The parked query on the old primary times out (at most 300 s + 1/16), then the next one
    # waits on the new primary, whose index (2) is below the last one (4), until it times out
    # too and answers with the lower index.
    net.clock.advance(319)
    assert "replication remote index moved backwards, forcing a full sync" not in messages
    net.clock.advance(319)
    converge(net)
    assert "replication remote index moved backwards, forcing a full sync" in messages
    assert [r["Datacenter"] for r in comparable(net, "dc2")] == ["dc4"]
    stop(net)
