"""``/v1/status/leader`` and ``/v1/status/peers``."""

from __future__ import annotations

from klein import Klein

from wanfedtx.http.common import APIContext, IRequest, datacenter, json_reply, route


def mount(app: Klein, ctx: APIContext) -> None:
    @app.route("/v1/status/leader", methods=["GET"])
    @route
    async def leader(request: IRequest) -> bytes:
        args = {"Datacenter": datacenter(request, ctx)}
        return json_reply(request, await ctx.rpc("Status.Leader", args))

    @app.route("/v1/status/peers", methods=["GET"])
    @route
    async def peers(request: IRequest) -> bytes:
        args = {"Datacenter": datacenter(request, ctx)}
        return json_reply(request, await ctx.rpc("Status.Peers", args))
