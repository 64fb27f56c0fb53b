"""``/v1/catalog/*``: register, deregister, datacenters, nodes, services, service/<s>, node/<n>."""

from __future__ import annotations

from typing import Any

from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    args_list,
    json_body,
    json_reply,
    query_args,
    route,
    write_args,
)
from wanfedtx.http.parking import ReadReply, Render, read


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


def mount(app: Klein, ctx: APIContext) -> None:
    @app.route("/v1/catalog/register", methods=["PUT"])
    @route
    async def register(request: IRequest) -> bytes:
        body = _body_object(request)
        args = {**body, **write_args(request, ctx)}
        if body.get("Datacenter"):
            args["Datacenter"] = body["Datacenter"]
        return json_reply(request, await ctx.rpc("Catalog.Register", args))

    @app.route("/v1/catalog/deregister", methods=["PUT"])
    @route
    async def deregister(request: IRequest) -> bytes:
        body = _body_object(request)
        args = {**body, **write_args(request, ctx)}
        if body.get("Datacenter"):
            args["Datacenter"] = body["Datacenter"]
        return json_reply(request, await ctx.rpc("Catalog.Deregister", args))

    @app.route("/v1/catalog/datacenters", methods=["GET"])
    @route
    async def datacenters(request: IRequest) -> bytes:
        return json_reply(request, await ctx.rpc("Catalog.ListDatacenters", {}))

    @app.route("/v1/catalog/nodes", methods=["GET"])
    @route
    def nodes(request: IRequest) -> ReadReply:
        return read(request, ctx, "Catalog.ListNodes", query_args(request, ctx), _field("Nodes"))

    @app.route("/v1/catalog/services", methods=["GET"])
    @route
    def services(request: IRequest) -> ReadReply:
        args = query_args(request, ctx)
        return read(request, ctx, "Catalog.ListServices", args, _field("Services"))

    @app.route("/v1/catalog/service/", methods=["GET"])
    @app.route("/v1/catalog/service/<path:name>", methods=["GET"])
    @route
    def service(request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing service name")
        args = query_args(request, ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))
        return read(request, ctx, "Catalog.ServiceNodes", args, _field("ServiceNodes"))

    @app.route("/v1/catalog/node/", methods=["GET"])
    @app.route("/v1/catalog/node/<path:name>", methods=["GET"])
    @route
    def node(request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing node name")
        args = query_args(request, ctx)
        args["Node"] = name
        return read(request, ctx, "Catalog.NodeServices", args, _field("NodeServices"))
