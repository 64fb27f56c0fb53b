"""Federation-state anti-entropy and pruning under ``task.Clock``."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from federation_support import Net, result
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import globalLogPublisher

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.federation.antientropy import FederationStateAntiEntropy, FederationStatePruning
from wanfedtx.federation.loop import RetryLoop
from wanfedtx.federation.server import FederationServer, FederationTiming
from wanfedtx.federation.structs import FederationState


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


def leader_fed(known: list[str] | None = None) -> Any:
    def make(cat: CatalogAgent, primary: str) -> FederationServer:
        return FederationServer(
            cat,
            primary,
            leader_routines=True,
            datacenters=(lambda: known) if known is not None else None,
        )

    return make


def register_gateway(cat: CatalogAgent, node: str, port: int, status: str = "passing") -> None:
    req = {
        "Node": node,
        "Address": "127.0.0.2",
        "Service": {
            "Kind": "mesh-gateway",
            "Service": "mesh-gateway",
            "Port": port,
            "Meta": {"consul-wan-federation": "1"},
        },
        "Check": {"CheckID": f"{node}-gw", "Name": "gw", "Status": status, "ServiceID": ""},
    }
    result(cat.rpc("Catalog.Register", req))


def ae(fed: FederationServer) -> FederationStateAntiEntropy:
    (routine,) = [r for r in fed.routines if isinstance(r, FederationStateAntiEntropy)]
    return routine


def stored(net: Net, in_dc: str, dc: str) -> Any:
    """The stored state in its wire form (``None`` when there is none)."""
    state = net.servers[in_dc].fsm.state.federation_state_get(None, dc)[1]
    return None if state is None else state.to_wire()


def test_primary_records_itself_at_startup_and_follows_its_gateways(
    net: Net, messages: list[str]
) -> None:
    fed = net.add("dc1", "dc1", make=leader_fed())
    net.servers["dc1"].startService()
    row = stored(net, "dc1", "dc1")
    assert row is not None and row["MeshGateways"] == []  # the first round always writes
    assert "federation state anti-entropy synced" in messages
    register_gateway(net.servers["dc1"], "gw1", 4431)
    row = stored(net, "dc1", "dc1")
    assert [g["Node"]["Node"] for g in row["MeshGateways"]] == ["gw1"]
    assert row["MeshGateways"][0]["Service"]["Port"] == 4431
    syncs = ae(fed).syncs
    # An unrelated catalog change wakes the round, which finds nothing to do.
    result(net.servers["dc1"].rpc("Catalog.Register", {"Node": "web", "Address": "10.0.0.9"}))
    assert ae(fed).syncs == syncs
    assert "federation state anti-entropy sync skipped; already up to date" in messages
    register_gateway(net.servers["dc1"], "gw1", 4431, status="critical")  # unfiltered
    row = stored(net, "dc1", "dc1")
    assert row["MeshGateways"][0]["Checks"][0]["Status"] == "critical"
    assert ae(fed).syncs == syncs + 1
    net.servers["dc1"].stopService()
    assert fed.routines == []


def test_secondary_pushes_to_the_primary(net: Net) -> None:
    net.add("dc1", "dc1")
    net.add("dc2", "dc1", make=leader_fed())
    for cat in net.servers.values():
        cat.startService()
    fed2 = net.feds["dc2"]
    row = stored(net, "dc1", "dc2")
    assert row is not None and ("dc1", "FederationState.Apply") in net.calls
    # Written in the primary, then replicated back (10 ms after the apply).
    net.clock.advance(0.01)
    copy = stored(net, "dc2", "dc2")
    assert copy is not None and copy["PrimaryModifyIndex"] == row["ModifyIndex"]
    register_gateway(net.servers["dc2"], "gw2", 4432)
    row = stored(net, "dc1", "dc2")
    assert [g["Service"]["Port"] for g in row["MeshGateways"]] == [4432]
    net.clock.advance(0.01)
    assert stored(net, "dc2", "dc2")["MeshGateways"] == row["MeshGateways"]
    # The copy replicated back equals the catalog: later rounds skip.
    syncs = ae(fed2).syncs
    net.clock.advance(30)
    assert ae(fed2).syncs == syncs == 2
    for cat in net.servers.values():
        cat.stopService()


def test_errors_back_off_exponentially_and_recover(net: Net, messages: list[str]) -> None:
    net.add("dc1", "dc1")
    fed2 = net.add("dc2", "dc1", make=leader_fed())
    net.down.add("dc1")
    for cat in net.servers.values():
        cat.startService()
    loop = ae(fed2)
    assert loop.runs == 1
    assert "error performing anti-entropy sync of federation state" in messages
    net.clock.advance(1.9)
    assert loop.runs == 1
    net.clock.advance(0.1)  # 2 s after the first failure
    assert loop.runs == 2
    net.clock.advance(3.9)
    assert loop.runs == 2
    net.clock.advance(0.1)  # then 4 s
    assert loop.runs == 3
    net.down.clear()
    net.clock.advance(8)  # then 8 s, and this one succeeds
    assert stored(net, "dc1", "dc2") is not None and loop.syncs == 1
    net.clock.advance(60)  # replication copies it back; the rounds it wakes find no change
    assert stored(net, "dc2", "dc2") is not None and loop.syncs == 1
    for cat in net.servers.values():
        cat.stopService()


def test_rate_limited_to_a_burst_of_five_then_one_per_five_seconds(net: Net) -> None:
    fed = net.add("dc1", "dc1", make=leader_fed())
    net.servers["dc1"].startService()
    loop = ae(fed)
    for i in range(8):
        register_gateway(net.servers["dc1"], f"gw{i}", 4000 + i)
    assert loop.runs == 5  # the first round plus four wake-ups: the burst is spent
    net.clock.advance(4.9)
    assert loop.runs == 5
    net.clock.advance(0.1)
    assert loop.runs == 6
    assert len(stored(net, "dc1", "dc1")["MeshGateways"]) == 8
    net.servers["dc1"].stopService()


def test_leadership_loss_stops_the_routines(net: Net) -> None:
    fed = net.add("dc1", "dc1", make=leader_fed())
    net.servers["dc1"].startService()
    names = [r.name for r in fed.routines]
    assert names == ["federation state anti-entropy", "federation state pruning"]
    running = list(fed.routines)
    fed.leader.leadership_changed(False)
    assert fed.routines == [] and not any(r.running for r in running)
    register_gateway(net.servers["dc1"], "gw1", 1)
    assert stored(net, "dc1", "dc1")["MeshGateways"] == []  # nobody pushes any more
    fed.leader.leadership_changed(True)
    assert len(stored(net, "dc1", "dc1")["MeshGateways"]) == 1
    d = net.servers["dc1"].stopService()
    assert d.called


def test_secondaries_do_not_prune(net: Net) -> None:
    net.add("dc1", "dc1")
    fed = net.add("dc2", "dc1", make=leader_fed())
    for cat in net.servers.values():
        cat.startService()
    assert [r.name for r in fed.routines] == [
        "federation state replication",
        "federation state anti-entropy",
    ]
    for cat in net.servers.values():
        cat.stopService()


def test_pruning_removes_states_of_unknown_datacenters_hourly(
    net: Net, messages: list[str]
) -> None:
    known = ["dc1", "dc2"]
    fed = net.add("dc1", "dc1", make=leader_fed(known))
    net.servers["dc1"].startService()
    for dc in ("dc2", "dc3"):
        apply = {"Op": "upsert", "State": {"Datacenter": dc}}
        result(net.servers["dc1"].rpc("FederationState.Apply", apply))
    net.clock.advance(3599)
    assert stored(net, "dc1", "dc3") is not None
    net.clock.advance(1)
    assert stored(net, "dc1", "dc3") is None and stored(net, "dc1", "dc2") is not None
    assert "pruning stale federation state" in messages
    known.remove("dc2")
    (pruning,) = [r for r in fed.routines if isinstance(r, FederationStatePruning)]
    pruned = Deferred.fromCoroutine(pruning.prune_stale_federation_states())
    assert result(pruned) == ["dc2"]
    assert [
        r.datacenter for r in net.servers["dc1"].fsm.state.federation_state_list(None)[1]
    ] == ["dc1"]
    net.servers["dc1"].stopService()


def test_timing_defaults_match_the_reference() -> None:
    t = FederationTiming()
    assert (t.loop_rate, t.loop_burst, t.prune_interval) == (0.2, 5, 3600.0)
    assert (t.replication_rate, t.replication_burst, t.replication_apply_limit) == (1.0, 5, 100.0)


def test_a_stop_during_the_write_to_the_primary_ends_the_loop(messages: list[str]) -> None:
    """Regression: stopping the routine while its write was in flight cancelled the write, the
    round wrapped the CancelledError as a sync error, logged it and backed off, and the loop
    went on retrying (2, 4, 8, 16 s ...): the stop never finished, so a server SIGTERMed right
    after it became leader never exited (found by a full run under load)."""
    clock = task.Clock()
    endpoints = SimpleNamespace(datacenter="dc1")
    loop = FederationStateAntiEntropy(endpoints, "dc1", clock)  # type: ignore[arg-type]
    writes: list[Deferred[None]] = []
    loop.fetch = lambda index: succeed((5, (None, FederationState("dc1", ()))))  # type: ignore[method-assign]

    def write(curr: FederationState) -> Deferred[None]:
        writes.append(Deferred())
        return writes[-1]

    loop.update_our_federation_state = write  # type: ignore[method-assign,assignment]
    loop.startService()
    assert loop.runs == 1 and len(writes) == 1
    stopped = loop.stopService()
    assert stopped.called, "the stop waits for a loop that goes on"
    clock.advance(600)
    assert loop.runs == 1 and len(writes) == 1
    assert "error performing anti-entropy sync of federation state" not in messages


def test_a_round_failing_after_the_stop_is_not_retried(messages: list[str]) -> None:
    clock = task.Clock()
    loop = RetryLoop("r", clock, lambda index: fail(RuntimeError("raft is already shutdown")),
                     lambda exc: messages.append(str(exc)))
    gate: Deferred[None] = Deferred()
    loop.run_once = lambda index: gate.addCallback(  # type: ignore[method-assign]
        lambda _: fail(RuntimeError("raft is already shutdown")))
    loop.startService()
    loop.running = False  # the stop began (the parent stops it later in the same turn)
    gate.callback(None)
    clock.advance(600)
    assert messages == [] and loop.runs == 1
