# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""``/v1/catalog/*``: register, deregister, datacenters, nodes, services, service/<s>, node/<n>."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    args_list,
    endpoint,
    json_body,
    json_reply,
    query_args,
    write_args,
)
from wanfedtx.http.family import family_app
from wanfedtx.http.parking import ReadReply, Render, read


@cache
def _field(name: str) -> Render:
    """Render the reply's ``name`` field as the JSON body."""

    def render(request: IRequest, reply: dict[str, Any]) -> bytes:
        return json_reply(request, reply[name])

    return render


def _body_object(request: IRequest) -> dict[str, Any]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    return body


@attrs.define
class CatalogRoutes:
    """``/v1/catalog/*`` over ``ctx.rpc`` (``Catalog.*``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/catalog",)

    ctx: APIContext

    @app.route("/v1/catalog/register", methods=["PUT"])
    @endpoint
    async def register(self, request: IRequest) -> bytes:
        ctx = self.ctx
        body = _body_object(request)
        args = {**body, **write_args(request, ctx)}
        if body.get("Datacenter"):
            args["Datacenter"] = body["Datacenter"]
        return json_reply(request, await ctx.rpc("Catalog.Register", args))

    @app.route("/v1/catalog/deregister", methods=["PUT"])
    @endpoint
    async def deregister(self, request: IRequest) -> bytes:
        ctx = self.ctx
        body = _body_object(request)
        args = {**body, **write_args(request, ctx)}
        if body.get("Datacenter"):
            args["Datacenter"] = body["Datacenter"]
        return json_reply(request, await ctx.rpc("Catalog.Deregister", args))

    @app.route("/v1/catalog/datacenters", methods=["GET"])
    @endpoint
    async def datacenters(self, request: IRequest) -> bytes:
        ctx = self.ctx
        return json_reply(request, await ctx.rpc("Catalog.ListDatacenters", {}))

    @app.route("/v1/catalog/nodes", methods=["GET"])
    @endpoint
    def nodes(self, request: IRequest) -> ReadReply:
        ctx = self.ctx
        return read(request, ctx, "Catalog.ListNodes", query_args(request, ctx), _field("Nodes"))

    @app.route("/v1/catalog/services", methods=["GET"])
    @endpoint
    def services(self, request: IRequest) -> ReadReply:
        ctx = self.ctx
        args = query_args(request, ctx)
        return read(request, ctx, "Catalog.ListServices", args, _field("Services"))

    @app.route("/v1/catalog/service/", methods=["GET"])
    @app.route("/v1/catalog/service/<path:name>", methods=["GET"])
    @endpoint
    def service(self, request: IRequest, name: str = "") -> ReadReply:
        ctx = self.ctx
        if not name:
            raise HTTPError(400, "Missing service name")
        args = query_args(request, ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))
        return read(request, ctx, "Catalog.ServiceNodes", args, _field("ServiceNodes"))

    @app.route("/v1/catalog/node/", methods=["GET"])
    @app.route("/v1/catalog/node/<path:name>", methods=["GET"])
    @endpoint
    def node(self, request: IRequest, name: str = "") -> ReadReply:
        ctx = self.ctx
        if not name:
            raise HTTPError(400, "Missing node name")
        args = query_args(request, ctx)
        args["Node"] = name
        return read(request, ctx, "Catalog.NodeServices", args, _field("NodeServices"))
