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
)
from wanfedtx.http.parking import ReadReply, read


def _all_passing(entry: dict[str, Any]) -> bool:
    return all(c["Status"] == "passing" for c in entry["Checks"])


def mount(app: Klein, ctx: APIContext) -> None:
    @app.route("/v1/health/service/", methods=["GET"])
    @app.route("/v1/health/service/<path:name>", methods=["GET"])
    @route
    def service(request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing service name")
        passing = bool_arg(request, "passing")
        args = query_args(request, ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))

        def render(request: IRequest, reply: dict[str, Any]) -> bytes:
            nodes = reply["Nodes"]
            if passing:
                nodes = [n for n in nodes if _all_passing(n)]
            return json_reply(request, nodes)

        return read(request, ctx, "Health.ServiceNodes", args, render)

    def render_checks(request: IRequest, reply: dict[str, Any]) -> bytes:
        return json_reply(request, reply["HealthChecks"])

    def checks(request: IRequest, method: str, extra: dict[str, str]) -> ReadReply:
        args = query_args(request, ctx)
        args.update(extra)
        return read(request, ctx, method, args, render_checks)

    @app.route("/v1/health/checks/", methods=["GET"])
    @app.route("/v1/health/checks/<path:name>", methods=["GET"])
    @route
    def service_checks(request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing service name")
        return checks(request, "Health.ServiceChecks", {"ServiceName": name})

    @app.route("/v1/health/node/", methods=["GET"])
    @app.route("/v1/health/node/<path:name>", methods=["GET"])
    @route
    def node_checks(request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing node name")
        return checks(request, "Health.NodeChecks", {"Node": name})

    @app.route("/v1/health/state/", methods=["GET"])
    @app.route("/v1/health/state/<path:state>", methods=["GET"])
    @route
    def in_state(request: IRequest, state: str = "") -> ReadReply:
        if not state:
            raise HTTPError(400, "Missing check state")
        if state not in ("any", "passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check state {state!r}")
        return checks(request, "Health.ChecksInState", {"State": state})
