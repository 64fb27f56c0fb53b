# -*- test-case-name: tests.unit.gateway,tests.integration.gateway.test_gateway_cli -*-
"""The gateway's admin API, shaped like Envoy's where scripts read it.

``/ready`` (``LIVE``), ``/stats`` (``name: value`` text), ``/stats/prometheus`` (the relay's
counters plus Envoy's ``server.*`` and ``cluster.<name>.membership_*`` gauges,
``wanfedtx.gateway.serverstats``), ``/clusters``
(text, or ``?format=json`` with Envoy's ``cluster_statuses[].host_statuses[]`` shape) and
``/config_dump`` (the current routing snapshot as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from wanfedtx import webbase
from wanfedtx.gateway import serverstats
from wanfedtx.gateway.serverstats import ServerInfo
from wanfedtx.gateway.snapshot import Snapshot
from wanfedtx.gateway.stats import GatewayStats


def clusters_json(snapshot: Snapshot, stats: GatewayStats) -> dict[str, Any]:
    statuses = []
    for c in snapshot.clusters:
        eps = snapshot.endpoints_of(c.name) or ()
        hosts = []
        for e in eps:
            host: dict[str, Any] = {
                "address": {"socket_address": {"address": e.address, "port_value": e.port}},
                "health_status": {"eds_health_status": e.health},
                "weight": e.weight if e.weight is not None else 1,
            }
            hosts.append(host)
        cs = stats.clusters.get(c.name)
        entry: dict[str, Any] = {"name": c.name, "added_via_api": True, "host_statuses": hosts}
        if cs is not None:
            entry["stats"] = [{"name": k, "value": str(v)} for k, v in cs.items()]
        statuses.append(entry)
    return {"cluster_statuses": statuses}


def clusters_text(snapshot: Snapshot) -> str:
    lines = []
    for c in snapshot.clusters:
        for e in snapshot.endpoints_of(c.name) or ():
            flags = "healthy" if e.health in ("HEALTHY", "UNKNOWN") else "/failed_eds_health"
            host = f"{c.name}::{e.address}:{e.port}"
            lines.append(f"{host}::health_flags::{flags}")
            lines.append(f"{host}::weight::{e.weight if e.weight is not None else 1}")
    return "\n".join(lines) + ("\n" if lines else "")


class _Leaf(webbase.Resource):
    isLeaf = True

    def __init__(self, render: Callable[[Request], tuple[str, bytes]]) -> None:
        super().__init__()
        self._render = render

    def render_GET(self, request: Request) -> bytes:
        ctype, body = self._render(request)
        request.setHeader(b"content-type", ctype.encode())
        return body


class AdminRoot(webbase.Resource):
    """The admin site's root; the callables give the snapshot and stats current at request time."""

    def __init__(
        self,
        get_snapshot: Callable[[], Snapshot],
        get_stats: Callable[[], GatewayStats],
        server: ServerInfo | None = None,
    ) -> None:
        super().__init__()
        self.get_snapshot = get_snapshot
        self.get_stats = get_stats
        self.server_info = server if server is not None else ServerInfo()
        self.putChild(b"ready", _Leaf(lambda r: ("text/plain", b"LIVE\n")))
        stats_res = _Leaf(lambda r: ("text/plain", self.stats_text().encode()))
        stats_res.isLeaf = False
        stats_res.putChild(
            b"prometheus",
            _Leaf(lambda r: ("text/plain; version=0.0.4", self.stats_prometheus().encode())),
        )
        self.putChild(b"stats", stats_res)
        self.putChild(b"clusters", _Leaf(self._clusters))
        self.putChild(b"config_dump", _Leaf(self._config_dump))

    def _snapshot_or_none(self) -> Snapshot | None:
        try:
            return self.get_snapshot()
        except ValueError:  # no routes yet
            return None

    def stats_text(self) -> str:
        """``/stats``: the relay's counters and the server and membership gauges, sorted."""
        stats = self.get_stats()
        lines = stats.render_text().splitlines()
        lines += serverstats.render_text(self.server_info, stats, self._snapshot_or_none())
        return "\n".join(sorted(lines)) + "\n"

    def stats_prometheus(self) -> str:
        """``/stats/prometheus``: the counters' families, then ``envoy_server_*`` and
        ``envoy_cluster_membership_*``."""
        stats = self.get_stats()
        return stats.render_prometheus() + serverstats.render_prometheus(
            self.server_info, stats, self._snapshot_or_none()
        )

    def _clusters(self, request: Request) -> tuple[str, bytes]:
        snap = self.get_snapshot()
        fmt = (request.args or {}).get(b"format", [b""])[0]
        if fmt == b"json":
            body = json.dumps(clusters_json(snap, self.get_stats()), indent=2) + "\n"
            return "application/json", body.encode()
        return "text/plain", clusters_text(snap).encode()

    def _config_dump(self, request: Request) -> tuple[str, bytes]:
        body = json.dumps(self.get_snapshot().to_json(), indent=2) + "\n"
        return "application/json", body.encode()

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return _Leaf(
                lambda r: (
                    "text/plain",
                    b"/ready /stats /stats/prometheus /clusters?format=json /config_dump\n",
                )
            )
        child: Resource = super().getChild(path, request)
        return child
