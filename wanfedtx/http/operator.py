# -*- test-case-name: tests.unit.http.test_http_operator_agent_ops -*-
"""``GET /v1/operator/raft/configuration`` and ``DELETE /v1/operator/raft/peer``: the
:class:`OperatorRoutes` family over the ``Operator.Raft*`` RPC endpoints
(``wanfedtx.raft.operator``).

``?stale`` lets any server answer the configuration; ``?dc`` asks another datacenter. The peer
to remove is ``?address=ip:port`` or ``?id=<id>``, exactly one of them (Consul's 400 texts
otherwise); success answers 200 with an empty body, failures 500 with the error text.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    APIContext,
    HTTPError,
    IRequest,
    arg,
    body_reply,
    endpoint,
    json_reply,
    query_args,
    write_args,
)
from wanfedtx.http.family import family_app
from wanfedtx.raft.errors import RaftError


@attrs.define
class OperatorRoutes:
    """``/v1/operator/raft/*`` over ``ctx.rpc``."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/operator/raft",)

    ctx: APIContext

    @app.route("/v1/operator/raft/configuration", methods=["GET"])
    @endpoint
    async def configuration(self, request: IRequest) -> bytes:
        args = query_args(request, self.ctx)
        try:
            reply = await self.ctx.rpc("Operator.RaftGetConfiguration", args)
        except RaftError as exc:
            raise HTTPError(500, str(exc)) from None
        return json_reply(request, {"Servers": reply.get("Servers") or [],
                                    "Index": reply.get("Index", 0)})

    @app.route("/v1/operator/raft/peer", methods=["DELETE"])
    @endpoint
    async def remove_peer(self, request: IRequest) -> bytes:
        peer_id, address = arg(request, "id") or "", arg(request, "address") or ""
        if not peer_id and not address:
            raise HTTPError(400, "Must specify either ?id with the server's ID or ?address with "
                            "IP:port of peer to remove")
        if peer_id and address:
            raise HTTPError(400, "Must specify only one of ?id or ?address")
        args = write_args(request, self.ctx)
        if peer_id:
            args["ID"] = peer_id
            method = "Operator.RaftRemovePeerByID"
        else:
            args["Address"] = address
            method = "Operator.RaftRemovePeerByAddress"
        try:
            await self.ctx.rpc(method, args)
        except RaftError as exc:
            raise HTTPError(500, str(exc)) from None
        return body_reply(request, 200, "text/plain; charset=utf-8", b"")
