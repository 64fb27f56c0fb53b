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
    set_meta,
    write_args,
)


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
    async def nodes(request: IRequest) -> bytes:
        reply = await ctx.rpc("Catalog.ListNodes", query_args(request, ctx))
        set_meta(request, reply)
        return json_reply(request, reply["Nodes"])

    @app.route("/v1/catalog/services", methods=["GET"])
    @route
    async def services(request: IRequest) -> bytes:
        reply = await ctx.rpc("Catalog.ListServices", query_args(request, ctx))
        set_meta(request, reply)
        return json_reply(request, reply["Services"])

    @app.route("/v1/catalog/service/", methods=["GET"])
    @app.route("/v1/catalog/service/<path:name>", methods=["GET"])
    @route
    async def service(request: IRequest, name: str = "") -> bytes:
        if not name:
            raise HTTPError(400, "Missing service name")
        args = query_args(request, ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))
        reply = await ctx.rpc("Catalog.ServiceNodes", args)
        set_meta(request, reply)
        return json_reply(request, reply["ServiceNodes"])

    @app.route("/v1/catalog/node/", methods=["GET"])
    @app.route("/v1/catalog/node/<path:name>", methods=["GET"])
    @route
    async def node(request: IRequest, name: str = "") -> bytes:
        if not name:
            raise HTTPError(400, "Missing node name")
        args = query_args(request, ctx)
        args["Node"] = name
        reply = await ctx.rpc("Catalog.NodeServices", args)
        set_meta(request, reply)
        return json_reply(request, reply["NodeServices"])
