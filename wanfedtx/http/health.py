# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""``/v1/health/*``: service/<s> (with ``?passing``, ``?tag``), checks/<s>, node/<n>, state/<st>."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    args_list,
    bool_arg,
    endpoint,
    json_reply,
    query_args,
)
from wanfedtx.http.family import family_app
from wanfedtx.http.parking import ReadReply, read


def _all_passing(entry: dict[str, Any]) -> bool:
    return all(c["Status"] == "passing" for c in entry["Checks"])


def render_checks(request: IRequest, reply: dict[str, Any]) -> bytes:
    return json_reply(request, reply["HealthChecks"])


@attrs.define
class HealthRoutes:
    """``/v1/health/*`` over ``ctx.rpc`` (``Health.*``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/health",)

    ctx: APIContext

    @app.route("/v1/health/service/", methods=["GET"])
    @app.route("/v1/health/service/<path:name>", methods=["GET"])
    @endpoint
    def service(self, request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing service name")
        passing = bool_arg(request, "passing")
        args = query_args(request, self.ctx)
        args.update(ServiceName=name, ServiceTags=args_list(request, "tag"))

        def render(request: IRequest, reply: dict[str, Any]) -> bytes:
            nodes = reply["Nodes"]
            if passing:
                nodes = [n for n in nodes if _all_passing(n)]
            return json_reply(request, nodes)

        return read(request, self.ctx, "Health.ServiceNodes", args, render)

    def checks(self, request: IRequest, method: str, extra: dict[str, str]) -> ReadReply:
        args = query_args(request, self.ctx)
        args.update(extra)
        return read(request, self.ctx, method, args, render_checks)

    @app.route("/v1/health/checks/", methods=["GET"])
    @app.route("/v1/health/checks/<path:name>", methods=["GET"])
    @endpoint
    def service_checks(self, request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing service name")
        return self.checks(request, "Health.ServiceChecks", {"ServiceName": name})

    @app.route("/v1/health/node/", methods=["GET"])
    @app.route("/v1/health/node/<path:name>", methods=["GET"])
    @endpoint
    def node_checks(self, request: IRequest, name: str = "") -> ReadReply:
        if not name:
            raise HTTPError(400, "Missing node name")
        return self.checks(request, "Health.NodeChecks", {"Node": name})

    @app.route("/v1/health/state/", methods=["GET"])
    @app.route("/v1/health/state/<path:state>", methods=["GET"])
    @endpoint
    def in_state(self, request: IRequest, state: str = "") -> ReadReply:
        if not state:
            raise HTTPError(400, "Missing check state")
        if state not in ("any", "passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check state {state!r}")
        return self.checks(request, "Health.ChecksInState", {"State": state})
