"""Labelled function gauges: read at render time, in Prometheus text and in the JSON summary of
``/v1/agent/metrics``; one family per name; a failing reader renders no sample."""

from __future__ import annotations

from wanfedtx.http.agent import metrics_summary
from wanfedtx.metrics import Registry


def test_a_labelled_function_gauge() -> None:
    registry = Registry()
    values = {("dc2",): 12_345_678.0, ("dc1",): 0.5}
    metric = registry.gauge_vec_func("federation_state.age", "age", ("datacenter",),
                                     lambda: values)
    assert registry.gauge_vec_func("federation_state.age", "age", ("datacenter",),
                                   lambda: values) is metric
    text = registry.render()
    assert text.count("# TYPE consul_federation_state_age gauge") == 1
    assert 'consul_federation_state_age{datacenter="dc1"} 0.5\n' in text
    assert 'consul_federation_state_age{datacenter="dc2"} 1.2345678e+07\n' in text
    values[("dc3",)] = 1.0
    assert 'datacenter="dc3"' in registry.render()
    gauges = metrics_summary(registry, 0.0)["Gauges"]
    assert {"Name": "consul.federation_state.age", "Value": 1.0,
            "Labels": {"datacenter": "dc3"}} in gauges


def test_a_failing_reader_renders_only_the_header() -> None:
    registry = Registry()

    def broken() -> dict[tuple[str, ...], float]:
        raise OSError("gone")

    registry.gauge_vec_func("x", "x", ("a",), broken)
    assert registry.render() == "# HELP consul_x x\n# TYPE consul_x gauge\n"
