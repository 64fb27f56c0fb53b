"""The metrics registry: counters, gauges, timers, Prometheus text and Consul's JSON summary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanfedtx.http.agent import metrics_summary
from wanfedtx.metrics import Registry


def test_prometheus_text_for_every_kind() -> None:
    r = Registry()
    r.counter("rpc.cross-dc", "forwarded", ("datacenter",)).inc(datacenter="dc2")
    r.gauge("raft.term", "term").set(3)
    t = r.summary("federation_state.apply", "apply time")
    t.observe(0.25)
    t.observe(0.5)
    fsm = r.summary("fsm.federation_state.dc2", "fsm", ("op",))
    fsm.observe(0.001, op="upsert")
    text = r.render()
    assert 'consul_rpc_cross_dc{datacenter="dc2"} 1\n' in text
    assert "consul_raft_term 3\n" in text
    assert "# TYPE consul_federation_state_apply summary\n" in text
    assert "consul_federation_state_apply_sum 750\n" in text  # milliseconds, as go-metrics
    assert "consul_federation_state_apply_count 2\n" in text
    assert 'consul_fsm_federation_state_dc2_count{op="upsert"} 1\n' in text
    assert t.count() == 2 and t.total() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="takes labels"):
        fsm.observe(1.0)
    with pytest.raises(ValueError, match="another type"):
        r.counter("federation_state.apply", "clash")


def test_json_summary_shape() -> None:
    r = Registry()
    r.counter("rpc.query", "queries").inc(4)
    r.gauge("raft.term", "term").set(2)
    r.summary("federation_state.get", "get").observe(0.002)
    out = metrics_summary(r, 0.0)
    assert out["Timestamp"] == "1970-01-01 00:00:00 +0000 UTC"
    assert out["Gauges"] == [{"Name": "consul.raft.term", "Value": 2.0, "Labels": {}}]
    assert out["Counters"] == [{"Name": "consul.rpc.query", "Count": 4, "Sum": 4.0, "Labels": {}}]
    (sample,) = out["Samples"]
    assert sample["Name"] == "consul.federation_state.get" and sample["Count"] == 1
    assert sample["Sum"] == pytest.approx(2.0) and sample["Mean"] == pytest.approx(2.0)


def test_endpoints_count_queries_and_parked_ones() -> None:
    import random

    from twisted.internet import task

    from wanfedtx.catalog.endpoints import Endpoints
    from wanfedtx.fsm.consensus import LocalConsensus
    from wanfedtx.fsm.machine import FSM

    r = Registry()
    fsm = FSM()
    ep = Endpoints(
        "dc1", fsm.state, LocalConsensus(fsm, "a:1"), task.Clock(), random.Random(1), None, r
    )
    fsm.state.kvs_set(5, {"Key": "k", "Value": b"1"})
    handlers = ep.handlers()
    handlers["KVS.Get"]({"Key": "k"})
    parked = [
        handlers["KVS.Get"]({"Key": "k", "MinQueryIndex": 5, "MaxQueryTime": 10**10})
        for _ in range(3)
    ]
    text = r.render()
    assert "consul_rpc_query 4\n" in text
    assert "consul_rpc_queries_blocking 3\n" in text
    fsm.state.kvs_set(6, {"Key": "k", "Value": b"2"})
    assert all(d.called for d in parked)
    assert "consul_rpc_queries_blocking 0\n" in r.render()
    gauges = {g["Name"]: g["Value"] for g in metrics_summary(r, 0.0)["Gauges"]}
    assert gauges == {"consul.rpc.queries_blocking": 0.0}


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_rendered_values_are_exact(value: float) -> None:
    from wanfedtx.metrics import go_float

    assert float(go_float(value)) == value


def test_process_metrics_have_go_collector_names_and_real_values() -> None:
    import os
    import time

    from wanfedtx.processmetrics import register_process_metrics

    r = Registry()
    register_process_metrics(r)
    register_process_metrics(r)  # idempotent
    values = {}
    for line in r.render().splitlines():
        if not line.startswith("#"):
            name, _, val = line.partition(" ")
            values[name] = float(val)
    assert set(values) == {
        "process_resident_memory_bytes", "process_virtual_memory_bytes",
        "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
        "process_start_time_seconds",
    }
    assert values["process_resident_memory_bytes"] > 1_000_000
    assert values["process_virtual_memory_bytes"] >= values["process_resident_memory_bytes"]
    assert values["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=2)
    assert 0 < values["process_cpu_seconds_total"]
    started = values["process_start_time_seconds"]
    assert time.time() - 24 * 3600 < started <= time.time() + 1
    assert "# TYPE process_cpu_seconds_total counter" in r.render()
    assert not any(m["Name"].startswith("consul.process") for m in metrics_summary(r, 0)["Gauges"])
