# -*- test-case-name: tests.unit.gateway.test_gateway_router -*-
"""SNI routing over a snapshot: filter-chain match as Envoy does it, then endpoint choice.

A :class:`RouteTable` is compiled once per snapshot and listener. Matching follows Envoy's
``FilterChainMatch.server_names``: the exact name first, then wildcard suffixes from the longest
(``a.b.example.com`` tries ``*.b.example.com``, then ``*.example.com``, then ``*.com``; a
wildcard thus matches one or more labels), then the chain without server names (the catch-all).
A connection without SNI only matches the catch-all. ``sni_cluster`` chains take the SNI itself as
the cluster name. Endpoint choice is weighted random among HEALTHY/UNKNOWN endpoints with an
injected RNG, skipping endpoints already tried on this connection (fail-over).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from wanfedtx.gateway.snapshot import HEALTHY, UNKNOWN, Endpoint, FilterChain, Snapshot

ROUTABLE_HEALTH = (HEALTHY, UNKNOWN)


@attrs.frozen
class Route:
    """The outcome of matching one SNI: the chain, and the cluster it names (maybe unknown)."""

    chain: FilterChain
    cluster: str
    endpoints: tuple[Endpoint, ...] | None
    """None when the cluster does not exist in the snapshot (Envoy: no route)."""


class RouteTable:
    """The compiled filter chains of one listener plus the snapshot's clusters."""

    def __init__(self, snapshot: Snapshot, listener_index: int = 0) -> None:
        self.snapshot = snapshot
        self._exact: dict[str, FilterChain] = {}
        self._wild: dict[str, FilterChain] = {}
        self._catch_all: FilterChain | None = None
        if snapshot.listeners:
            for fc in snapshot.listeners[listener_index].filter_chains:
                if not fc.server_names:
                    self._catch_all = fc
                for sn in fc.server_names:
                    if sn.startswith("*."):
                        self._wild[sn[2:]] = fc
                    else:
                        self._exact[sn] = fc
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        names = set(snapshot.cluster_names())
        for la in snapshot.load_assignments:
            if la.cluster_name in names:
                self._endpoints[la.cluster_name] = la.endpoints
        for n in names:
            self._endpoints.setdefault(n, ())

    def match_chain(self, sni: str | None) -> FilterChain | None:
        if sni:
            fc = self._exact.get(sni)
            if fc is not None:
                return fc
            if self._wild:
                dot = sni.find(".")
                while dot != -1:
                    fc = self._wild.get(sni[dot + 1 :])
                    if fc is not None:
                        return fc
                    dot = sni.find(".", dot + 1)
        return self._catch_all

    def route(self, sni: str | None) -> Route | None:
        """The route for an SNI, or None if no chain matches or no cluster can be named."""
        fc = self.match_chain(sni)
        if fc is None:
            return None
        cluster = (sni or "") if fc.sni_cluster else fc.cluster
        if not cluster:
            return None
        return Route(fc, cluster, self._endpoints.get(cluster))


def pick_endpoint(
    endpoints: Sequence[Endpoint], rng: random.Random, exclude: Sequence[Endpoint] = ()
) -> Endpoint | None:
    """Weighted random choice among routable endpoints not in ``exclude``; None if none left."""
    candidates = [e for e in endpoints if e.health in ROUTABLE_HEALTH and e not in exclude]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    weights = [e.weight if e.weight is not None else 1 for e in candidates]
    return rng.choices(candidates, weights=weights, k=1)[0]
