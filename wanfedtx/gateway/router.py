# -*- test-case-name: tests.unit.gateway.test_gateway_router -*-
"""SNI routing over a snapshot: filter-chain match as Envoy does it, then endpoint choice.

A :class:`RouteTable` is compiled once per snapshot and listener. Matching follows Envoy's
``FilterChainMatch.server_names``: the exact name first, then wildcard suffixes from the longest
(``a.b.example.com`` tries ``*.b.example.com``, then ``*.example.com``, then ``*.com``; a
wildcard thus matches one or more labels), then the chain without server names (the catch-all).
A connection without SNI only matches the catch-all. ``sni_cluster`` chains take the SNI itself as
the cluster name. Endpoint choice is weighted random among HEALTHY/UNKNOWN endpoints with an
injected RNG, skipping endpoints already tried on this connection (fail-over).

The per-connection work is kept small: :meth:`RouteTable.lookup` matches once and remembers the
outcome per SNI (a bounded cache, cleared when full, so names a peer makes up cannot grow it),
each cluster's routable endpoints, cumulative weights and connect timeout are computed with the
table, and :meth:`RouteTable.pick` only filters endpoints on a fail-over.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import attrs

from wanfedtx.gateway.snapshot import HEALTHY, UNKNOWN, Endpoint, FilterChain, Snapshot

ROUTABLE_HEALTH = (HEALTHY, UNKNOWN)
LOOKUP_CACHE_MAX = 1024
DEFAULT_CONNECT_TIMEOUT = 5.0


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
        self._timeouts = {c.name: c.connect_timeout_ms / 1000.0 for c in snapshot.clusters}
        # cluster -> (routable endpoints, their cumulative weights) for a first pick
        self._routable: dict[str, tuple[list[Endpoint], list[int]]] = {}
        for n, eps in self._endpoints.items():
            cand = [e for e in eps if e.health in ROUTABLE_HEALTH]
            weights = [e.weight if e.weight is not None else 1 for e in cand]
            self._routable[n] = (cand, list(itertools.accumulate(weights)))
        self._lookups: dict[str | None, tuple[FilterChain | None, Route | None]] = {}

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

    def lookup(self, sni: str | None) -> tuple[FilterChain | None, Route | None]:
        """The matching chain and the route of ``sni`` in one step (remembered per SNI)."""
        found = self._lookups.get(sni)
        if found is None:
            found = (self.match_chain(sni), self.route(sni))
            if len(self._lookups) >= LOOKUP_CACHE_MAX:
                self._lookups.clear()
            self._lookups[sni] = found
        return found

    def connect_timeout(self, cluster: str) -> float:
        """The connect timeout of ``cluster`` in seconds (5 s if the cluster is not there)."""
        return self._timeouts.get(cluster, DEFAULT_CONNECT_TIMEOUT)

    def pick(
        self, route: Route, rng: random.Random, exclude: Sequence[Endpoint] = ()
    ) -> Endpoint | None:
        """:func:`pick_endpoint` over the route's endpoints, with the first pick precomputed
        (the same choice for the same RNG state)."""
        pre = self._routable.get(route.cluster)
        if exclude or pre is None or route.endpoints is not self._endpoints.get(route.cluster):
            return pick_endpoint(route.endpoints or (), rng, exclude)
        cand, cum = pre
        if not cand:
            return None
        if len(cand) == 1:
            return cand[0]
        return rng.choices(cand, cum_weights=cum, k=1)[0]

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
