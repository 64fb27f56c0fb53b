"""Prometheus text values are written as Go's client writes them: exact, never rounded to six
significant digits."""

from __future__ import annotations

import pytest

from wanfedtx.metrics import Registry, go_float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (-0.0, "0"),  # writeFloat tests f == 0 first
        (999999.0, "999999"),
        (1e6, "1e+06"),
        (12345678.0, "1.2345678e+07"),
        (1234567.5, "1.2345675e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-2.25, "-2.25"),
        (1e21, "1e+21"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
    ],
)
def test_go_float(value: float, text: str) -> None:
    assert go_float(value) == text
    if text not in ("NaN", "+Inf", "-Inf"):
        assert float(text) == value


def test_a_counter_past_ten_million_renders_exactly() -> None:
    registry = Registry()
    counter = registry.counter("rpc.request", "RPC requests")
    counter.inc(10_000_001)
    timer = registry.summary("rpc.time", "RPC time")
    timer.observe(12_345_678.25)
    text = registry.render()
    assert "consul_rpc_request 1.0000001e+07\n" in text
    assert float("1.0000001e+07") == 10_000_001
    assert "consul_rpc_time_sum 1.234567825e+10\n" in text  # timers render in ms, as go-metrics
