# -*- test-case-name: tests.unit.http.test_http_families -*-
"""``GET /v1/agent/self`` and ``GET /v1/agent/metrics``: the :class:`AgentRoutes` family.

``/v1/agent/self`` answers as Consul's ``AgentSelf``: ``Config`` (Datacenter, PrimaryDatacenter,
NodeName, NodeID, Revision, Server, Version), ``DebugConfig`` (the sanitized runtime config),
``Coord`` (null: this agent takes no part in network coordinates yet), ``Member`` (this node as
its LAN serf member is advertised), ``Stats`` and ``Meta`` (node metadata). ``?pretty`` indents
the JSON as Consul does.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any, ClassVar, Protocol

import attrs
from klein import Klein

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.http.common import (
    HTTPError,
    IRequest,
    arg,
    body_reply,
    endpoint,
    has_arg,
    json_reply,
)
from wanfedtx.http.family import family_app
from wanfedtx.metrics import (
    PREFIX,
    REGISTRY,
    UNPREFIXED,
    Counter,
    Gauge,
    GaugeFunc,
    Registry,
    Summary,
)


class AgentView(Protocol):
    """What the agent routes read from the agent."""

    @property
    def config(self) -> RuntimeConfig: ...

    def member(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, dict[str, str]]: ...


def agent_self(view: AgentView) -> dict[str, Any]:
    rt = view.config
    return {
        "Config": {
            "Datacenter": rt.datacenter,
            "PrimaryDatacenter": rt.primary_datacenter,
            "NodeName": rt.node_name,
            "NodeID": rt.node_id,
            "Revision": rt.revision,
            "Server": rt.server_mode,
            "Version": rt.version,
        },
        "DebugConfig": rt.sanitized(),
        "Coord": None,
        "Member": view.member(),
        "Stats": view.stats(),
        "Meta": dict(rt.node_meta),
    }


def metrics_summary(registry: Registry, now: float) -> dict[str, Any]:
    """``/v1/agent/metrics`` as JSON, shaped like Consul's (go-metrics ``MetricsSummary``).

    Values are cumulative since the agent started (Consul's in-memory sink shows the current
    10 s interval); Min/Max/Stddev/Rate are not kept, so they are not shown.
    """
    gauges: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for metric in registry.metrics():
        if metric.name.startswith(UNPREFIXED):
            continue  # Go's process collector is Prometheus-only, as in Consul
        name = f"{PREFIX}.{metric.name}"
        if isinstance(metric, Summary):
            for key, count, total in metric.samples():
                labels = dict(zip(metric.labelnames, key, strict=True))
                samples.append(
                    {
                        "Name": name,
                        "Count": int(count),
                        "Sum": total * 1000.0,  # go-metrics timers are in milliseconds
                        "Mean": total * 1000.0 / count if count else 0.0,
                        "Labels": labels,
                    }
                )
            continue
        for key, value in metric.items():
            labels = dict(zip(metric.labelnames, key, strict=True))
            if isinstance(metric, Gauge | GaugeFunc):
                gauges.append({"Name": name, "Value": value, "Labels": labels})
            elif isinstance(metric, Counter):
                counters.append({"Name": name, "Count": int(value), "Sum": value, "Labels": labels})
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return {
        "Timestamp": stamp.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    }


@attrs.define
class AgentRoutes:
    """``/v1/agent/self`` and ``/v1/agent/metrics`` of ``view`` (the agent)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/agent/metrics", "/v1/agent/self")

    view: AgentView

    @app.route("/v1/agent/metrics", methods=["GET"])
    @endpoint
    async def metrics(self, request: IRequest) -> bytes:
        fmt = arg(request, "format")
        if fmt == "prometheus":
            text = REGISTRY.render().encode()
            return body_reply(request, 200, "text/plain; version=0.0.4; charset=utf-8", text)
        if fmt:
            raise HTTPError(400, f"Unknown metrics format {fmt!r}; use ?format=prometheus")
        return json_reply(request, metrics_summary(REGISTRY, time.time()))

    @app.route("/v1/agent/self", methods=["GET"])
    @endpoint
    async def self_(self, request: IRequest) -> bytes:
        body = agent_self(self.view)
        if has_arg(request, "pretty"):
            pretty = json.dumps(body, indent=4).encode() + b"\n"
            return body_reply(request, 200, "application/json", pretty)
        return json_reply(request, body)
