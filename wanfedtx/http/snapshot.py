# -*- test-case-name: tests.unit.http.test_http_snapshot -*-
"""``GET /v1/snapshot`` (save) and ``PUT /v1/snapshot`` (restore): the :class:`SnapshotRoutes`
family over the agent's snapshot call (a server's own dispatch, ``wanfedtx.snapshot.server``).

GET writes ``X-Consul-Index`` (the snapshot's raft index), ``X-Consul-LastContact`` and
``X-Consul-KnownLeader``, then the archive as ``application/x-gzip``. PUT takes the archive as
the body (at most ``limits.raft_max_entry_size`` bytes) and answers 200 with an empty body.
``?dc`` names another datacenter, ``?stale`` (by presence) lets a follower answer a save; the
token comes as everywhere else. Errors: ``Permission denied`` and ``ACL not found`` are 403,
anything else 500 with the error text, as the reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import attrs
from klein import Klein

from wanfedtx.http.common import (
    HTTPError,
    IRequest,
    arg,
    body_reply,
    endpoint,
    has_arg,
    set_meta,
    token,
)
from wanfedtx.http.family import family_app

OP_SAVE = 0
OP_RESTORE = 1

SnapshotCall = Callable[[dict[str, Any], bytes], Awaitable[tuple[dict[str, Any], bytes]]]


def _raise_for(reply: dict[str, Any]) -> None:
    error = reply.get("Error") or ""
    if not error:
        return
    if "Permission denied" in error or "ACL not found" in error:
        raise HTTPError(403, str(error).splitlines()[0])
    raise HTTPError(500, str(error))


@attrs.define
class SnapshotRoutes:
    """``/v1/snapshot`` over ``call`` (header map, archive) -> (reply map, archive)."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/snapshot",)

    datacenter: str
    call: SnapshotCall
    default_token: str = ""

    def _header(self, request: IRequest, op: int) -> dict[str, Any]:
        dc = arg(request, "dc") or self.datacenter
        return {"Datacenter": dc, "Token": token(request) or self.default_token,
                "AllowStale": has_arg(request, "stale"), "Op": op}

    @app.route("/v1/snapshot", methods=["GET"])
    @endpoint
    async def save(self, request: IRequest) -> bytes:
        reply, archive = await self.call(self._header(request, OP_SAVE), b"")
        _raise_for(reply)
        set_meta(request, reply)
        return body_reply(request, 200, "application/x-gzip", archive)

    @app.route("/v1/snapshot", methods=["PUT"])
    @endpoint
    async def restore(self, request: IRequest) -> bytes:
        content = request.content
        archive = content.read() if content is not None else b""
        reply, _ = await self.call(self._header(request, OP_RESTORE), archive)
        _raise_for(reply)
        return body_reply(request, 200, "text/plain; charset=utf-8", b"")
