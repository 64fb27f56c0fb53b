# -*- test-case-name: tests.unit.http,tests.integration.http -*-
"""``/v1/agent/{services,checks,service/...,check/...}``: the agent's local services and checks.

Registrations land in :class:`~wanfedtx.local.state.LocalState`; anti-entropy pushes them to the
catalog. TTL check updates go to the check runners.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.http.common import (
    HTTPError,
    IRequest,
    arg,
    endpoint,
    json_body,
    json_reply,
    text_reply,
    token,
)
from wanfedtx.http.family import family_app
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import decode_check, decode_service
from wanfedtx.local.state import LocalState


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


@attrs.define
class AgentServicesRoutes:
    """The agent's local services and checks (``local``) and its TTL checks (``runners``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = (
        "/v1/agent/services",
        "/v1/agent/service",
        "/v1/agent/checks",
        "/v1/agent/check",
    )

    local: LocalState
    runners: CheckRunners
    datacenter: str

    @app.route("/v1/agent/services", methods=["GET"])
    @endpoint
    async def services(self, request: IRequest) -> bytes:
        live = self.local.live_services()
        return json_reply(request, {sid: agent_service_out(s) for sid, s in live.items()})

    @app.route("/v1/agent/service/<path:sid>", methods=["GET"])
    @endpoint
    async def service(self, request: IRequest, sid: str) -> bytes:
        svc = self.local.live_services().get(sid)
        if svc is None:
            raise HTTPError(404, f"unknown service ID: {sid}")
        return json_reply(request, agent_service_out(svc))

    @app.route("/v1/agent/checks", methods=["GET"])
    @endpoint
    async def checks(self, request: IRequest) -> bytes:
        return json_reply(request, self.local.live_checks())

    @app.route("/v1/agent/service/register", methods=["PUT"])
    @endpoint
    async def register_service(self, request: IRequest) -> bytes:
        definition = decode_service(_body(request))
        self.local.add_service(definition, token(request))
        return text_reply(request, 200, "")

    @app.route("/v1/agent/service/deregister/<path:sid>", methods=["PUT"])
    @endpoint
    async def deregister_service(self, request: IRequest, sid: str) -> bytes:
        self.local.remove_service(sid)
        return text_reply(request, 200, "")

    @app.route("/v1/agent/check/register", methods=["PUT"])
    @endpoint
    async def register_check(self, request: IRequest) -> bytes:
        try:
            definition = decode_check(_body(request))
        except BadRequestError as exc:
            raise HTTPError(400, f"Invalid check: {exc}") from exc
        self.local.add_check(definition, token(request))
        return text_reply(request, 200, "")

    @app.route("/v1/agent/check/deregister/<path:cid>", methods=["PUT"])
    @endpoint
    async def deregister_check(self, request: IRequest, cid: str) -> bytes:
        self.local.remove_check(cid)
        return text_reply(request, 200, "")

    async def _ttl(self, request: IRequest, cid: str, status: str) -> bytes:
        self.runners.ttl_update(cid, status, arg(request, "note") or "")
        return text_reply(request, 200, "")

    @app.route("/v1/agent/check/pass/<path:cid>", methods=["PUT"])
    @endpoint
    def ttl_passing(self, request: IRequest, cid: str) -> Coroutine[Any, Any, bytes]:
        return self._ttl(request, cid, "passing")

    @app.route("/v1/agent/check/warn/<path:cid>", methods=["PUT"])
    @endpoint
    def ttl_warning(self, request: IRequest, cid: str) -> Coroutine[Any, Any, bytes]:
        return self._ttl(request, cid, "warning")

    @app.route("/v1/agent/check/fail/<path:cid>", methods=["PUT"])
    @endpoint
    def ttl_critical(self, request: IRequest, cid: str) -> Coroutine[Any, Any, bytes]:
        return self._ttl(request, cid, "critical")

    @app.route("/v1/agent/check/update/<path:cid>", methods=["PUT"])
    @endpoint
    async def update_check(self, request: IRequest, cid: str) -> bytes:
        body = _body(request)
        status = body.get("Status")
        output = body.get("Output", "")
        if status not in ("passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check status: {status!r}")
        if not isinstance(output, str):
            raise HTTPError(400, "Request decode failed: Output must be a string")
        self.runners.ttl_update(cid, status, output)
        return text_reply(request, 200, "")
