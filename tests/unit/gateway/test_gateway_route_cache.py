"""RouteTable's per-connection shortcuts give the same answers as the plain lookups."""

from __future__ import annotations

import random

from test_gateway_snapshot import wanfed_inputs

from wanfedtx.gateway.router import LOOKUP_CACHE_MAX, RouteTable, pick_endpoint
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.snapshot import build_snapshot

TABLE = RouteTable(build_snapshot(wanfed_inputs(True)))


def test_lookup_matches_match_chain_and_route() -> None:
    names = [
        "pri2.server.primary.consul",
        "sec.server.secondary.consul",
        "server.primary.consul",
        "nope.example.com",
        None,
    ]
    for sni in names * 2:  # the second pass comes from the cache
        fc, route = TABLE.lookup(sni)
        assert fc is TABLE.match_chain(sni)
        assert route == TABLE.route(sni)


def test_lookup_cache_stays_bounded_under_made_up_names() -> None:
    table = RouteTable(build_snapshot(wanfed_inputs(True)))
    for i in range(LOOKUP_CACHE_MAX * 3):
        table.lookup(f"x{i}.server.secondary.consul")
    assert len(table._lookups) <= LOOKUP_CACHE_MAX
    _, route = table.lookup("pri2.server.primary.consul")
    assert route is not None and route.cluster == "pri2.server.primary.consul"


def weighted_table() -> RouteTable:
    snap = routes_to_snapshot(
        {
            "clusters": [
                {
                    "name": "c",
                    "connect_timeout": "1.5s",
                    "endpoints": [
                        {"address": "10.0.0.1", "port": 1, "weight": 1},
                        {"address": "10.0.0.2", "port": 1, "weight": 3},
                        {"address": "10.0.0.3", "port": 1, "weight": 5, "health": "UNHEALTHY"},
                        {"address": "10.0.0.4", "port": 1, "weight": 2},
                    ],
                }
            ],
            "filter_chains": [{"server_names": ["c"], "cluster": "c", "stat_prefix": "c"}],
        },
        "127.0.0.1",
        0,
    )
    return RouteTable(snap)


def test_first_pick_is_the_same_choice_as_pick_endpoint() -> None:
    table = weighted_table()
    _, route = table.lookup("c")
    assert route is not None and route.endpoints is not None
    a, b = random.Random(7), random.Random(7)
    fast = [table.pick(route, a) for _ in range(500)]
    plain = [pick_endpoint(route.endpoints, b) for _ in range(500)]
    assert fast == plain
    assert {e.address for e in fast if e is not None} == {"10.0.0.1", "10.0.0.2", "10.0.0.4"}


def test_fail_over_pick_skips_tried_endpoints() -> None:
    table = weighted_table()
    _, route = table.lookup("c")
    assert route is not None and route.endpoints is not None
    tried = [route.endpoints[0], route.endpoints[1]]
    rng = random.Random(1)
    for _ in range(50):
        ep = table.pick(route, rng, tried)
        assert ep is not None and ep.address == "10.0.0.4"
    assert table.pick(route, rng, [*tried, route.endpoints[3]]) is None


def test_connect_timeout_per_cluster_and_default() -> None:
    table = weighted_table()
    timeouts = {c.name: c.connect_timeout_ms / 1000.0 for c in table.snapshot.clusters}
    assert table.connect_timeout("c") == timeouts["c"]
    assert table.connect_timeout("no-such-cluster") == 5.0
