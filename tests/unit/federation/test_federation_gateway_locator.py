"""The gateway locator against the real state store's federation-states table."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import task

from wanfedtx.federation.gateway_locator import GatewayLocator, best_address
from wanfedtx.federation.structs import FederationState
from wanfedtx.state import StateStore


def gw(node: str, addr: str, port: int, *checks: str, meta: bool = True, **svc: Any) -> Any:
    return {
        "Node": {"Node": node, "Address": addr, "TaggedAddresses": {}},
        "Service": {
            "Service": "mesh-gateway",
            "Kind": "mesh-gateway",
            "Port": port,
            "Address": "",
            "Meta": {"consul-wan-federation": "1"} if meta else {},
            **svc,
        },
        "Checks": [{"Status": s} for s in checks],
    }


def state(dc: str, *gateways: Any) -> FederationState:
    return FederationState(dc, tuple(gateways))


def locator(store: StateStore, dc: str, clock: task.Clock, ready: bool = True) -> GatewayLocator:
    return GatewayLocator(
        clock, random.Random(3), dc, "dc1", store.federation_state_list, lambda: ready
    )


def test_reference_case_primary_and_secondary_views() -> None:
    store = StateStore()
    store.federation_state_set(1, state("dc1", gw("a", "1.2.3.4", 5555), gw("b", "4.3.2.1", 9999)))
    store.federation_state_set(2, state("dc2", gw("c", "5.6.7.8", 5555), gw("d", "8.7.6.5", 9999)))
    clock = task.Clock()
    primary = locator(store, "dc1", clock)
    primary.startService()
    clock.advance(0)
    dc1 = ["1.2.3.4:5555", "4.3.2.1:9999"]
    assert primary.local_gateways == dc1 and primary.primary_gateways == dc1
    assert primary.primary_gateways_ready.called
    secondary = locator(store, "dc2", clock)
    secondary.startService()
    clock.advance(0)
    assert secondary.local_gateways == ["5.6.7.8:5555", "8.7.6.5:9999"]
    assert secondary.primary_gateways == dc1
    assert secondary.pick_gateway("dc1") in dc1
    assert secondary.pick_gateway("dc3") in secondary.local_gateways  # via a local gateway
    primary.stopService()
    secondary.stopService()


def test_fallback_until_replicated_then_follows_changes_at_the_rate_limit() -> None:
    store = StateStore()
    clock = task.Clock()
    loc = locator(store, "dc2", clock)
    loc.startService()
    clock.advance(0)
    assert loc.pick_gateway("dc1") == "" and loc.pick_gateway("dc2") == ""
    loc.refresh_primary_gateway_fallback_addresses(["9.9.9.9:443", "8.8.8.8:443"])
    assert loc.primary_gateway_fallback_addresses() == ["8.8.8.8:443", "9.9.9.9:443"]
    assert loc.pick_gateway("dc1") in ("8.8.8.8:443", "9.9.9.9:443")
    assert loc.pick_gateway("dc3") == ""  # no fallback for other datacenters
    store.federation_state_set(5, state("dc1", gw("a", "1.2.3.4", 5555)))
    clock.advance(0)  # the parked blocking query re-ran and delivered
    clock.advance(5)  # next loop (rate limit: tokens left, so at once)
    assert loc.primary_gateways == ["1.2.3.4:5555"]
    assert loc.pick_gateway("dc1") == "1.2.3.4:5555"
    # Unusable gateways are dropped: critical check, or no wanfed meta.
    store.federation_state_set(
        6, state("dc1", gw("a", "1.2.3.4", 5555, "critical"), gw("b", "2.2.2.2", 1, meta=False))
    )
    clock.advance(5)
    assert loc.primary_gateways == []
    assert loc.pick_gateway("dc1") in ("8.8.8.8:443", "9.9.9.9:443")
    loc.stopService()
    assert clock.getDelayedCalls() == []


def test_waits_for_local_state_with_backoff_without_logging() -> None:
    store = StateStore()
    store.federation_state_set(1, state("dc1", gw("a", "1.2.3.4", 5555)))
    clock = task.Clock()
    ready = [False]
    loc = GatewayLocator(
        clock, random.Random(1), "dc2", "dc1", store.federation_state_list, lambda: ready[0]
    )
    loc.startService()
    clock.advance(0)
    assert loc.primary_gateways == []
    ready[0] = True
    clock.advance(1.9)
    assert loc.primary_gateways == []  # first backoff is 2 s
    clock.advance(0.2)
    assert loc.primary_gateways == ["1.2.3.4:5555"]
    loc.stopService()


@pytest.mark.parametrize(
    ("svc", "node_wan", "wan", "want"),
    [
        (
            {"TaggedAddresses": {"wan": {"Address": "203.0.113.1", "Port": 0}}},
            "",
            True,
            "203.0.113.1:4431",
        ),
        ({"Address": "10.0.0.9"}, "198.51.100.1", True, "10.0.0.9:4431"),
        ({}, "198.51.100.1", True, "198.51.100.1:4431"),
        ({}, "", True, "10.0.0.1:4431"),
        ({"Address": "::1"}, "", False, "[::1]:4431"),
        (
            {"TaggedAddresses": {"wan": {"Address": "203.0.113.1", "Port": 1}}},
            "",
            False,
            "10.0.0.1:4431",
        ),
    ],
)
def test_best_address(svc: dict[str, Any], node_wan: str, wan: bool, want: str) -> None:
    g = gw("a", "10.0.0.1", 4431, **svc)
    if node_wan:
        g["Node"]["TaggedAddresses"] = {"wan": node_wan}
    assert best_address(g, wan) == want
