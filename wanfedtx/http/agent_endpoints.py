"""``/v1/agent/...`` endpoints: ``GET /v1/agent/self``.

``/v1/agent/self`` answers as Consul's ``AgentSelf``: ``Config`` (Datacenter, PrimaryDatacenter,
NodeName, NodeID, Revision, Server, Version), ``DebugConfig`` (the sanitized runtime config),
``Coord`` (null: this agent takes no part in network coordinates yet), ``Member`` (this node as
its LAN serf member is advertised), ``Stats`` and ``Meta`` (node metadata).
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from wanfedtx.http.app import HTTPApi


def register(api: HTTPApi) -> None:
    view = api.view

    @api.route("/v1/agent/self", methods=("GET",))
    def agent_self(request: IRequest) -> dict[str, Any]:
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
