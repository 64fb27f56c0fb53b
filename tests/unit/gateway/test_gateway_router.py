"""SNI matching (Envoy server_names semantics) and weighted endpoint choice."""

from __future__ import annotations

import random
from collections import Counter

from test_gateway_snapshot import TRUST, wanfed_inputs

from wanfedtx.gateway.router import RouteTable, pick_endpoint
from wanfedtx.gateway.snapshot import Endpoint, build_snapshot

TABLE = RouteTable(build_snapshot(wanfed_inputs(True)))


def test_exact_server_name_routes_to_that_server() -> None:
    r = TABLE.route("pri2.server.primary.consul")
    assert r is not None and r.cluster == "pri2.server.primary.consul"
    assert r.endpoints is not None and [e.address for e in r.endpoints] == ["10.0.0.2"]


def test_wildcard_matches_one_or_more_labels() -> None:
    for sni in ("sec.server.secondary.consul", "a.b.c.server.secondary.consul"):
        r = TABLE.route(sni)
        assert r is not None and r.cluster == "server.secondary.consul"
    r = TABLE.route(f"web.default.third.internal.{TRUST}")
    assert r is not None and r.cluster == f"third.internal.{TRUST}"


def test_wildcard_needs_at_least_one_label() -> None:
    # server.secondary.consul itself does not match *.server.secondary.consul: the catch-all
    # sends it to the cluster of that name
    r = TABLE.route("server.secondary.consul")
    assert r is not None and r.chain.sni_cluster and r.cluster == "server.secondary.consul"


def test_catch_all_routes_to_the_cluster_named_by_sni() -> None:
    r = TABLE.route("server.primary.consul")
    assert r is not None and r.chain.sni_cluster
    assert r.endpoints is not None and len(r.endpoints) == 2


def test_unknown_sni_has_no_cluster_and_no_sni_has_no_route() -> None:
    r = TABLE.route("nope.example.com")
    assert r is not None and r.endpoints is None
    assert TABLE.route(None) is None


def test_unknown_local_server_falls_to_catch_all_without_cluster() -> None:
    r = TABLE.route("ghost.server.primary.consul")
    assert r is not None and r.chain.sni_cluster and r.endpoints is None


def test_pick_is_weighted_and_skips_unhealthy_and_excluded() -> None:
    eps = (
        Endpoint("a", 1, "HEALTHY", 1),
        Endpoint("b", 1, "HEALTHY", 3),
        Endpoint("c", 1, "UNHEALTHY", 100),
        Endpoint("d", 1, "UNKNOWN", None),
    )
    rng = random.Random(7)
    counts = Counter(pick_endpoint(eps, rng).address for _ in range(5000))  # type: ignore[union-attr]
    assert set(counts) == {"a", "b", "d"}
    assert 2.5 < counts["b"] / counts["a"] < 3.5
    assert pick_endpoint(eps, rng, exclude=(eps[0], eps[1], eps[3])) is None
    assert pick_endpoint(eps[:1], rng, exclude=eps[:1]) is None
