# -*- test-case-name: tests.unit.http.test_http_families -*-
"""``/v1/status/leader`` and ``/v1/status/peers``."""

from __future__ import annotations

from typing import ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import APIContext, IRequest, datacenter, endpoint, json_reply
from wanfedtx.http.family import family_app


@attrs.define
class StatusRoutes:
    """``/v1/status/*`` over ``ctx.rpc`` (``Status.Leader``, ``Status.Peers``)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/status",)

    ctx: APIContext

    @app.route("/v1/status/leader", methods=["GET"])
    @endpoint
    async def leader(self, request: IRequest) -> bytes:
        args = {"Datacenter": datacenter(request, self.ctx)}
        return json_reply(request, await self.ctx.rpc("Status.Leader", args))

    @app.route("/v1/status/peers", methods=["GET"])
    @endpoint
    async def peers(self, request: IRequest) -> bytes:
        args = {"Datacenter": datacenter(request, self.ctx)}
        return json_reply(request, await self.ctx.rpc("Status.Peers", args))
