"""Federation metrics on a fake clock: ``consul_federation_state_age`` per datacenter, Consul's
replication status/index gauges and the replication lag (index and seconds)."""

from __future__ import annotations

import pytest
from federation_support import Net
from test_federation_replication import FAST, apply, converge, replicator, start, stop
from twisted.internet import task

from wanfedtx.federation.metrics import (
    ReplicationMetrics,
    register_state_age,
    state_ages,
    updated_at_seconds,
)
from wanfedtx.federation.server import FederationTiming
from wanfedtx.federation.structs import FederationState
from wanfedtx.metrics import REGISTRY, Registry


def _state(dc: str, updated_at: str) -> FederationState:
    return FederationState(datacenter=dc, updated_at=updated_at)  # type: ignore[call-arg]


def test_updated_at_parses_go_times() -> None:
    assert updated_at_seconds("1970-01-01T00:00:10.5Z") == 10.5
    assert updated_at_seconds("0001-01-01T00:00:00Z") is None
    assert updated_at_seconds("garbage") is None


def test_age_per_datacenter_renders_at_scrape_time() -> None:
    clock = task.Clock()
    clock.advance(100)
    states = [_state("dc1", "1970-01-01T00:01:30Z"), _state("dc2", "1970-01-01T00:00:00.25Z"),
              _state("dc3", "0001-01-01T00:00:00Z")]
    assert state_ages(states, 100.0) == {("dc1",): 10.0, ("dc2",): 99.75}
    registry = Registry()
    register_state_age(registry, lambda: states, clock)
    clock.advance(20_000_000)
    text = registry.render()
    assert 'consul_federation_state_age{datacenter="dc1"} 2.000001e+07\n' in text
    assert 'consul_federation_state_age{datacenter="dc2"} 2.000009975e+07\n' in text
    assert "dc3" not in text


def test_a_failing_reader_renders_no_sample() -> None:
    registry = Registry()

    def broken() -> list[FederationState]:
        raise RuntimeError("store gone")

    register_state_age(registry, broken, task.Clock())
    assert "consul_federation_state_age{" not in registry.render()


def test_replication_metrics_on_their_own() -> None:
    clock = task.Clock()
    registry = Registry()
    m = ReplicationMetrics(registry, clock)
    clock.advance(30)
    m.failed()
    assert m.lag_seconds() == 30.0
    m.fetched(120, 100)
    text = registry.render()
    assert "consul_federation_state_replication_index_lag 20\n" in text
    assert "consul_leader_replication_federation_state_status 0\n" in text
    m.succeeded(120)
    clock.advance(500)  # a blocking query waiting on the primary: still current
    text = registry.render()
    assert "consul_federation_state_replication_lag_seconds 0\n" in text
    assert "consul_leader_replication_federation_state_index 120\n" in text
    assert "consul_federation_state_replication_index_lag 0\n" in text
    assert "consul_leader_replication_federation_state_status 1\n" in text
    m.failed()
    clock.advance(7)
    assert m.lag_seconds() == 7.0


def _value(name: str) -> float:
    for metric in REGISTRY.metrics():
        if metric.name == name:
            [(_, v)] = metric.items()
            return v
    raise AssertionError(f"{name} is not registered")


def test_a_secondary_reports_replication_failing_then_current(net: Net) -> None:
    net.down.add("dc1")
    start(net, FederationTiming())  # the reference's rates and backoff
    r = replicator(net)
    assert _value("leader.replication.federation-state.status") == 0
    net.clock.advance(3.0)
    assert _value("federation_state.replication.lag_seconds") == pytest.approx(3.0)
    net.down.clear()
    apply(net, "dc1", "upsert", {"Datacenter": "dc1"})
    for _ in range(500):  # the next round (backoff 2 s + jitter) succeeds
        net.clock.advance(0.01)
    assert r.failures == 0 and r.last_remote_index > 0
    assert _value("leader.replication.federation-state.status") == 1
    assert _value("leader.replication.federation-state.index") == r.last_remote_index
    assert _value("federation_state.replication.index_lag") == 0
    assert _value("federation_state.replication.lag_seconds") == 0
    stop(net)


def test_the_age_of_replicated_states_grows_until_the_next_update(net: Net) -> None:
    start(net, FAST)
    net.clock.advance(1000)
    apply(net, "dc1", "upsert", {"Datacenter": "dc3"})
    converge(net)
    net.clock.advance(42)
    text = REGISTRY.render()
    line = [x for x in text.splitlines()
            if x.startswith('consul_federation_state_age{datacenter="dc3"}')]
    assert line, text
    assert float(line[0].split()[-1]) == pytest.approx(42, abs=1)
    stop(net)
