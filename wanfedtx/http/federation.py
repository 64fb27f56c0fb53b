# -*- test-case-name: tests.unit.http.test_http_families,tests.integration.http -*-
"""Internal (debugging) HTTP APIs of federation states, read-only, as the reference's:

* ``GET /v1/internal/federation-state/<dc>``: ``FederationState.Get``; the path names the state,
  ``?dc=`` the datacenter whose server answers. The body is the whole response (``State``,
  ``Index``, ``LastContact``, ``KnownLeader``, ``ConsistencyLevel``); a missing state is a 404
  with an empty body, an empty name a 400 ``Missing datacenter name``.
* ``GET /v1/internal/federation-states``: ``FederationState.List``, a JSON array (never null).
* ``GET /v1/internal/federation-states/mesh-gateways``: ``FederationState.ListMeshGateways``, a
  JSON object from datacenter name to CheckServiceNodes.

* ``GET /v1/internal/service-dump?kind=<kind>``: ``Internal.ServiceDump`` of one service kind
  (``mesh-gateway``), a JSON array of CheckServiceNodes: what the reference's proxycfg reads
  over RPC for a mesh gateway's ``GatewayGroups`` (one watch per datacenter, ``?dc=``); our
  gateway is its own process and reads it over HTTP. ACL-filtered like the health endpoints.

All take the usual ``?dc``, ``?index``/``?wait``, ``?stale``/``?consistent`` and token.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    arg,
    body_reply,
    endpoint,
    json_reply,
    query_args,
)
from wanfedtx.http.family import family_app
from wanfedtx.http.parking import ReadReply, read


def _consistency(args: dict[str, Any]) -> str:
    if args.get("RequireConsistent"):
        return "consistent"
    if args.get("AllowStale"):
        return "stale"
    return "leader"


def render_list(request: IRequest, reply: dict[str, Any]) -> bytes:
    return json_reply(request, reply.get("States") or [])


def render_gateways(request: IRequest, reply: dict[str, Any]) -> bytes:
    nodes = reply.get("DatacenterNodes") or {}
    return json_reply(request, {dc: gws or [] for dc, gws in nodes.items()})


@attrs.define
class FederationStateRoutes:
    """``/v1/internal/federation-state*`` over ``ctx.rpc`` (``FederationState.*``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = (
        "/v1/internal/federation-state/",
        "/v1/internal/federation-states",
        "/v1/internal/service-dump",
    )

    ctx: APIContext

    @app.route("/v1/internal/federation-state/", methods=["GET"])
    @app.route("/v1/internal/federation-state/<path:name>", methods=["GET"])
    @endpoint
    def get(self, request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing datacenter name")
        args = query_args(request, self.ctx)
        args["TargetDatacenter"] = args["Datacenter"]
        args["Datacenter"] = name
        level = _consistency(args)

        def render(request: IRequest, reply: dict[str, Any]) -> bytes:
            if reply.get("State") is None:
                return body_reply(request, 404, "text/plain; charset=utf-8", b"")
            return json_reply(
                request,
                {
                    "State": reply["State"],
                    "Index": reply.get("Index", 0),
                    "LastContact": reply.get("LastContact", 0),
                    "KnownLeader": bool(reply.get("KnownLeader")),
                    "ConsistencyLevel": level,
                },
            )

        return read(request, self.ctx, "FederationState.Get", args, render)

    @app.route("/v1/internal/federation-states", methods=["GET"])
    @endpoint
    def list_states(self, request: IRequest) -> ReadReply:
        args = query_args(request, self.ctx)
        return read(request, self.ctx, "FederationState.List", args, render_list)

    @app.route("/v1/internal/federation-states/mesh-gateways", methods=["GET"])
    @endpoint
    def mesh_gateways(self, request: IRequest) -> ReadReply:
        return read(
            request,
            self.ctx,
            "FederationState.ListMeshGateways",
            query_args(request, self.ctx),
            render_gateways,
        )

    @app.route("/v1/internal/service-dump", methods=["GET"])
    @endpoint
    def service_dump(self, request: IRequest) -> ReadReply:
        kind = arg(request, "kind") or ""
        if not kind:
            raise HTTPError(400, "Missing service kind")
        args = query_args(request, self.ctx)
        args.update(ServiceKind=kind, UseServiceKind=True)

        def render(request: IRequest, reply: dict[str, Any]) -> bytes:
            return json_reply(request, reply.get("Nodes") or [])

        return read(request, self.ctx, "Internal.ServiceDump", args, render)
