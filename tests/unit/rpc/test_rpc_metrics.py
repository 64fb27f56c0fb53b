"""The tiny Prometheus metrics registry (wanfedtx.metrics)."""

from __future__ import annotations

import pytest

from wanfedtx.metrics import Registry, prometheus_name


def test_counter_with_labels_renders_prometheus_text() -> None:
    reg = Registry()
    c = reg.counter("rpc.cross-dc", "RPCs forwarded to another datacenter", ("datacenter",))
    c.inc(datacenter="dc2")
    c.inc(2, datacenter="dc3")
    c.inc(datacenter="dc2")
    assert reg.counter("rpc.cross-dc", "x", ("datacenter",)) is c
    assert reg.render() == (
        "# HELP consul_rpc_cross_dc RPCs forwarded to another datacenter\n"
        "# TYPE consul_rpc_cross_dc counter\n"
        'consul_rpc_cross_dc{datacenter="dc2"} 2\n'
        'consul_rpc_cross_dc{datacenter="dc3"} 2\n'
    )
    g = reg.gauge("raft.peers", "peers")
    g.set(3)
    assert "consul_raft_peers 3" in reg.render()
    assert prometheus_name("a.b-c") == "consul_a_b_c"


def test_misuse_is_refused() -> None:
    reg = Registry()
    c = reg.counter("x", "x", ("a",))
    with pytest.raises(ValueError):
        c.inc(-1, a="1")
    with pytest.raises(ValueError):
        c.inc(b="1")
    with pytest.raises(ValueError):
        reg.gauge("x", "x", ("a",))
