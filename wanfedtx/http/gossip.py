"""Consul's ``/v1/agent/members`` and the gossip operations (join, leave, force-leave) over HTTP.

The JSON shape is ``wanfedtx.gossip.api.member_json``. ``mount_agent_members(app, lan, wan)`` serves
``GET /v1/agent/members`` (LAN pool) and ``?wan=1`` (WAN pool); the pools are looked up on each
request so the agent can start and stop them freely; ``?segment=`` filters LAN members by their
``segment`` tag (``_all``: every member). ``mount_agent_gossip_ops`` adds join, leave and
force-leave on top of an ``IAgentGossipOps`` (the agent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from klein import Klein

from wanfedtx.gossip.api import members_json
from wanfedtx.gossip.serf import Serf

PoolGetter = Callable[[], Serf | None]
ALL_SEGMENTS = "_all"


def _has_param(request: Any, name: bytes) -> bool:
    """``?name`` present, with or without a value (``request.args`` drops blank ones)."""
    query = bytes(request.uri).partition(b"?")[2]
    return any(part.partition(b"=")[0] == name for part in query.split(b"&"))


def _flag(request: Any, name: bytes) -> bool:
    return request.args.get(name, [b""])[0] not in (b"", b"0", b"false")


def mount_agent_members(app: Klein, lan: PoolGetter, wan: PoolGetter) -> None:
    @app.route("/v1/agent/members", methods=["GET"])
    def agent_members(request: Any) -> bytes:
        want_wan = _flag(request, b"wan")
        segment = request.args.get(b"segment", [b""])[0].decode("utf-8", "replace")
        if want_wan and segment not in ("", ALL_SEGMENTS):
            request.setResponseCode(400)
            return b"Cannot provide a segment with wan=true"
        pool = wan() if want_wan else lan()
        request.setHeader(b"Content-Type", b"application/json")
        if pool is None:
            # Consul answers a client agent's ?wan=1 with an empty list.
            return b"[]"
        members = members_json(pool)
        if not want_wan and segment != ALL_SEGMENTS:
            members = [m for m in members if m["Tags"].get("segment", "") == segment]
        return json.dumps(members).encode()


class IAgentGossipOps(Protocol):
    """What the join/leave/force-leave endpoints need from the agent."""

    async def join(self, addrs: Sequence[str], wan: bool = False) -> int: ...

    async def leave_and_shutdown(self) -> None: ...

    def force_leave(self, node: str, prune: bool = False) -> None: ...


def mount_agent_gossip_ops(app: Klein, ops: IAgentGossipOps) -> None:
    """``PUT /v1/agent/join/<addr>`` (``?wan=1``), ``PUT /v1/agent/leave`` and
    ``PUT /v1/agent/force-leave/<node>`` (``?prune``); errors answer 500 with the error text, as
    Consul's HTTP layer does for errors without a specific code."""

    def fail(request: Any, exc: Exception) -> bytes:
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return str(exc).encode()

    @app.route("/v1/agent/join/<path:addr>", methods=["PUT"])
    async def agent_join(request: Any, addr: str) -> bytes:
        try:
            await ops.join([addr], wan=_flag(request, b"wan"))
        except Exception as exc:  # every join error goes back to the caller
            return fail(request, exc)
        return b""

    @app.route("/v1/agent/leave", methods=["PUT"])
    async def agent_leave(request: Any) -> bytes:
        try:
            await ops.leave_and_shutdown()
        except Exception as exc:
            return fail(request, exc)
        return b""

    @app.route("/v1/agent/force-leave/<path:node>", methods=["PUT"])
    def agent_force_leave(request: Any, node: str) -> bytes:
        try:
            ops.force_leave(node, prune=_has_param(request, b"prune"))
        except Exception as exc:
            return fail(request, exc)
        return b""
