"""``/v1/health/*``: service/<s> (with ``?passing``, ``?tag``), checks/<s>, node/<n>, state/<st>."""

from __future__ import annotations

from typing import Any

from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    args_list,
    bool_arg,
    json_reply,
    query_args,
    route,
    set_meta,
)


def _all_passing(entry: dict[str, Any]) -> bool:
    return all(c["Status"] == "passing" for c in entry["Checks"])


def mount(app: Klein, ctx: APIContext) -> None:
    @app.route("/v1/health/service/", methods=["GET"])
    @app.route("/v1/health/service/<path:name>", methods=["GET"])
    @route
    async def service(request: IRequest, name: str = "") -> bytes:
        if not name:
            raise HTTPError(400, "Missing service name")
        passing = bool_arg(request, "passing")
        args = query_args(request, ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))
        reply = await ctx.rpc("Health.ServiceNodes", args)
        set_meta(request, reply)
        nodes = reply["Nodes"]
        if passing:
            nodes = [n for n in nodes if _all_passing(n)]
        return json_reply(request, nodes)

    async def checks(request: IRequest, method: str, extra: dict[str, str]) -> bytes:
        args = query_args(request, ctx)
        args.update(extra)
        reply = await ctx.rpc(method, args)
        set_meta(request, reply)
        return json_reply(request, reply["HealthChecks"])

    @app.route("/v1/health/checks/", methods=["GET"])
    @app.route("/v1/health/checks/<path:name>", methods=["GET"])
    @route
    async def service_checks(request: IRequest, name: str = "") -> bytes:
        if not name:
            raise HTTPError(400, "Missing service name")
        return await checks(request, "Health.ServiceChecks", {"ServiceName": name})

    @app.route("/v1/health/node/", methods=["GET"])
    @app.route("/v1/health/node/<path:name>", methods=["GET"])
    @route
    async def node_checks(request: IRequest, name: str = "") -> bytes:
        if not name:
            raise HTTPError(400, "Missing node name")
        return await checks(request, "Health.NodeChecks", {"Node": name})

    @app.route("/v1/health/state/", methods=["GET"])
    @app.route("/v1/health/state/<path:state>", methods=["GET"])
    @route
    async def in_state(request: IRequest, state: str = "") -> bytes:
        if not state:
            raise HTTPError(400, "Missing check state")
        if state not in ("any", "passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check state {state!r}")
        return await checks(request, "Health.ChecksInState", {"State": state})
