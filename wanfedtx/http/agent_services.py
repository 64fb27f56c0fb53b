"""``/v1/agent/{services,checks,service/...,check/...}``: the agent's local services and checks.

Registrations land in :class:`~wanfedtx.local.state.LocalState`; anti-entropy pushes them to the
catalog. TTL check updates go to the check runners.
"""

from __future__ import annotations

from typing import Any

import attrs
from klein import Klein

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.http.common import (
    HTTPError,
    IRequest,
    arg,
    json_body,
    json_reply,
    route,
    text_reply,
    token,
)
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import decode_check, decode_service
from wanfedtx.local.state import LocalState


@attrs.define
class AgentServicesContext:
    local: LocalState
    runners: CheckRunners
    datacenter: str


def agent_service_out(svc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": svc["ID"],
        "Service": svc["Service"],
        "Tags": svc["Tags"],
        "Meta": svc["Meta"],
        "Port": svc["Port"],
        "Address": svc["Address"],
        "Weights": svc["Weights"],
        "EnableTagOverride": svc["EnableTagOverride"],
    }
    if svc["Kind"]:
        out["Kind"] = svc["Kind"]
    if svc["TaggedAddresses"]:
        out["TaggedAddresses"] = svc["TaggedAddresses"]
    return out


def _body(request: IRequest) -> Any:
    body = json_body(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    return body


def mount(app: Klein, ctx: AgentServicesContext) -> None:
    local = ctx.local

    @app.route("/v1/agent/services", methods=["GET"])
    @route
    async def services(request: IRequest) -> bytes:
        live = local.live_services()
        return json_reply(request, {sid: agent_service_out(s) for sid, s in live.items()})

    @app.route("/v1/agent/service/<path:sid>", methods=["GET"])
    @route
    async def service(request: IRequest, sid: str) -> bytes:
        svc = local.live_services().get(sid)
        if svc is None:
            raise HTTPError(404, f"unknown service ID: {sid}")
        return json_reply(request, agent_service_out(svc))

    @app.route("/v1/agent/checks", methods=["GET"])
    @route
    async def checks(request: IRequest) -> bytes:
        return json_reply(request, local.live_checks())

    @app.route("/v1/agent/service/register", methods=["PUT"])
    @route
    async def register_service(request: IRequest) -> bytes:
        definition = decode_service(_body(request))
        local.add_service(definition, token(request))
        return text_reply(request, 200, "")

    @app.route("/v1/agent/service/deregister/<path:sid>", methods=["PUT"])
    @route
    async def deregister_service(request: IRequest, sid: str) -> bytes:
        local.remove_service(sid)
        return text_reply(request, 200, "")

    @app.route("/v1/agent/check/register", methods=["PUT"])
    @route
    async def register_check(request: IRequest) -> bytes:
        try:
            definition = decode_check(_body(request))
        except BadRequestError as exc:
            raise HTTPError(400, f"Invalid check: {exc}") from exc
        local.add_check(definition, token(request))
        return text_reply(request, 200, "")

    @app.route("/v1/agent/check/deregister/<path:cid>", methods=["PUT"])
    @route
    async def deregister_check(request: IRequest, cid: str) -> bytes:
        local.remove_check(cid)
        return text_reply(request, 200, "")

    def ttl(status: str) -> Any:
        async def update(request: IRequest, cid: str) -> bytes:
            ctx.runners.ttl_update(cid, status, arg(request, "note") or "")
            return text_reply(request, 200, "")

        update.__qualname__ = f"ttl_{status}"
        return route(update)

    app.route("/v1/agent/check/pass/<path:cid>", methods=["PUT"])(ttl("passing"))
    app.route("/v1/agent/check/warn/<path:cid>", methods=["PUT"])(ttl("warning"))
    app.route("/v1/agent/check/fail/<path:cid>", methods=["PUT"])(ttl("critical"))

    @app.route("/v1/agent/check/update/<path:cid>", methods=["PUT"])
    @route
    async def update_check(request: IRequest, cid: str) -> bytes:
        body = _body(request)
        status = body.get("Status")
        output = body.get("Output", "")
        if status not in ("passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check status: {status!r}")
        if not isinstance(output, str):
            raise HTTPError(400, "Request decode failed: Output must be a string")
        ctx.runners.ttl_update(cid, status, output)
        return text_reply(request, 200, "")
