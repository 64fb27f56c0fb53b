"""``/v1/agent/...`` routes: ``GET /v1/agent/self``.

``/v1/agent/self`` answers as Consul's ``AgentSelf``: ``Config`` (Datacenter, PrimaryDatacenter,
NodeName, NodeID, Revision, Server, Version), ``DebugConfig`` (the sanitized runtime config),
``Coord`` (null: this agent takes no part in network coordinates yet), ``Member`` (this node as
its LAN serf member is advertised), ``Stats`` and ``Meta`` (node metadata). ``?pretty`` indents
the JSON as Consul does.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from klein import Klein

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.http.common import IRequest, body_reply, has_arg, json_reply, route


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


def mount_agent_routes(app: Klein, view: AgentView) -> None:
    @app.route("/v1/agent/self", methods=["GET"])
    @route
    async def self_(request: IRequest) -> bytes:
        body = agent_self(view)
        if has_arg(request, "pretty"):
            pretty = json.dumps(body, indent=4).encode() + b"\n"
            return body_reply(request, 200, "application/json", pretty)
        return json_reply(request, body)
