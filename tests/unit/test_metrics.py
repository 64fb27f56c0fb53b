"""The metrics registry: counters, gauges, timers, Prometheus text and Consul's JSON summary."""

from __future__ import annotations

import pytest

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
    assert "consul_federation_state_apply_sum 0.75\n" in text
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
