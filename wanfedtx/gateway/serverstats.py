# -*- test-case-name: tests.unit.gateway.test_gateway_server_stats -*-
"""Envoy's server and cluster-membership stats of the gateway, beside its counters.

What Envoy's admin ``/stats`` and ``/stats/prometheus`` show and gateway dashboards read:

* ``server.live`` (1 while serving), ``server.state`` (0: live), ``server.uptime`` (seconds since
  the process started), ``server.total_connections`` (open downstream connections, all
  listeners), ``server.memory_allocated`` (resident bytes), ``server.hot_restart_epoch`` (0);
  Prometheus: ``envoy_server_live``, ``envoy_server_uptime``, ...;
* per cluster, from the current routing snapshot: ``cluster.<name>.membership_total``,
  ``membership_healthy`` (endpoints HEALTHY or UNKNOWN, as Envoy counts EDS health),
  ``membership_degraded`` and ``membership_excluded`` (always 0 here); Prometheus:
  ``envoy_cluster_membership_healthy{envoy_cluster_name="..."}``. A datacenter whose gateways are
  all critical shows ``membership_healthy`` 0 for its cluster.

All are gauges. They are computed when the admin API is asked; the relay's counters
(``wanfedtx.gateway.stats``) are only read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from wanfedtx.gateway.snapshot import HEALTHY, UNKNOWN, Snapshot
from wanfedtx.gateway.stats import GatewayStats
from wanfedtx.processmetrics import resident_bytes, start_time_seconds

MEMBERSHIP = ("membership_total", "membership_healthy", "membership_degraded",
              "membership_excluded")


class ServerInfo:
    """The process facts ``server.*`` needs; time from ``clock`` (an ``IReactorTime``, the
    global reactor by default) and the start from ``/proc`` unless given."""

    def __init__(
        self,
        clock: Any = None,
        started: float | None = None,
        memory: Callable[[], float] = resident_bytes,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.clock = clock
        if started is None:
            try:
                started = start_time_seconds()
            except (OSError, ValueError, IndexError):
                started = float(clock.seconds())
        self.started = started
        self.memory = memory

    def uptime(self) -> int:
        return max(0, int(self.clock.seconds() - self.started))


def server_values(info: ServerInfo, stats: GatewayStats) -> list[tuple[str, int]]:
    """``(stat name after "server.", value)``, sorted."""
    try:
        memory = int(info.memory())
    except (OSError, ValueError, IndexError):
        memory = 0
    connections = sum(ls.downstream_cx_active for ls in list(stats.listeners.values()))
    return sorted([
        ("hot_restart_epoch", 0),
        ("live", 1),
        ("memory_allocated", memory),
        ("state", 0),
        ("total_connections", connections),
        ("uptime", info.uptime()),
    ])


def membership(snapshot: Snapshot | None) -> Iterator[tuple[str, dict[str, int]]]:
    """``(cluster name, {membership stat: value})`` for every cluster of ``snapshot``."""
    if snapshot is None:
        return
    for c in sorted(snapshot.clusters, key=lambda c: c.name):
        eps = snapshot.endpoints_of(c.name) or ()
        healthy = sum(1 for e in eps if e.health in (HEALTHY, UNKNOWN))
        yield c.name, {"membership_total": len(eps), "membership_healthy": healthy,
                       "membership_degraded": 0, "membership_excluded": 0}


def render_text(info: ServerInfo, stats: GatewayStats, snapshot: Snapshot | None) -> list[str]:
    """The ``name: value`` lines of ``/stats``."""
    lines = [f"server.{k}: {v}" for k, v in server_values(info, stats)]
    for name, values in membership(snapshot):
        lines.extend(f"cluster.{name}.{k}: {values[k]}" for k in MEMBERSHIP)
    return lines


def render_prometheus(info: ServerInfo, stats: GatewayStats, snapshot: Snapshot | None) -> str:
    """The ``envoy_server_*`` and ``envoy_cluster_membership_*`` families (Prometheus text)."""
    out: list[str] = []
    for k, v in server_values(info, stats):
        out += [f"# TYPE envoy_server_{k} gauge", f"envoy_server_{k} {v}"]
    clusters = list(membership(snapshot))
    for k in sorted(MEMBERSHIP):
        if not clusters:
            break
        out.append(f"# TYPE envoy_cluster_{k} gauge")
        out.extend(f'envoy_cluster_{k}{{envoy_cluster_name="{_escape(name)}"}} {values[k]}'
                   for name, values in clusters)
    return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
