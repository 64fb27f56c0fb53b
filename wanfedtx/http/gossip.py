# -*- test-case-name: tests.unit.http.test_http_families,tests.integration.gossip -*-
"""Consul's ``/v1/agent/members`` and the gossip operations (join, leave, force-leave) over HTTP.

The JSON shape is ``wanfedtx.gossip.api.member_json``. Two route families: ``MembersRoutes`` serves
``GET /v1/agent/members`` (LAN pool) and ``?wan=1`` (WAN pool); the pools are looked up on each
request so the agent can start and stop them freely; ``?segment=`` filters LAN members by their
``segment`` tag (``_all``: every member). ``GossipOpsRoutes`` serves join, leave and force-leave
on top of an ``IAgentGossipOps`` (the agent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import attrs
from klein import Klein

from wanfedtx.gossip.api import members_json
from wanfedtx.gossip.serf import Serf
from wanfedtx.http.app import mount
from wanfedtx.http.family import family_app

PoolGetter = Callable[[], Serf | None]
ALL_SEGMENTS = "_all"


def _has_param(request: Any, name: bytes) -> bool:
    """``?name`` present, with or without a value (``request.args`` drops blank ones)."""
    query = bytes(request.uri).partition(b"?")[2]
    return any(part.partition(b"=")[0] == name for part in query.split(b"&"))


def _flag(request: Any, name: bytes) -> bool:
    return request.args.get(name, [b""])[0] not in (b"", b"0", b"false")


@attrs.define
class MembersRoutes:
    """``GET /v1/agent/members`` of the pools ``lan()`` and ``wan()`` return."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/agent/members",)

    lan: PoolGetter
    wan: PoolGetter

    @app.route("/v1/agent/members", methods=["GET"])
    def agent_members(self, request: Any) -> bytes:
        want_wan = _flag(request, b"wan")
        segment = request.args.get(b"segment", [b""])[0].decode("utf-8", "replace")
        if want_wan and segment not in ("", ALL_SEGMENTS):
            request.setResponseCode(400)
            return b"Cannot provide a segment with wan=true"
        pool = self.wan() if want_wan else self.lan()
        request.setHeader(b"Content-Type", b"application/json")
        if pool is None:
            # Consul answers a client agent's ?wan=1 with an empty list.
            return b"[]"
        members = members_json(pool)
        if not want_wan and segment != ALL_SEGMENTS:
            members = [m for m in members if m["Tags"].get("segment", "") == segment]
        return json.dumps(members).encode()


def mount_agent_members(app: Klein, lan: PoolGetter, wan: PoolGetter) -> None:
    """Mount :class:`MembersRoutes` on ``app`` (a plain Klein app)."""
    mount(app, MembersRoutes(lan, wan))


class IAgentGossipOps(Protocol):
    """What the join/leave/force-leave endpoints need from the agent."""

    async def join(self, addrs: Sequence[str], wan: bool = False) -> int: ...

    async def leave_and_shutdown(self) -> None: ...

    def force_leave(self, node: str, prune: bool = False) -> None: ...


def _fail(request: Any, exc: Exception) -> bytes:
    request.setResponseCode(500)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return str(exc).encode()


@attrs.define
class GossipOpsRoutes:
    """``PUT /v1/agent/join/<addr>`` (``?wan=1``), ``PUT /v1/agent/leave`` and
    ``PUT /v1/agent/force-leave/<node>`` (``?prune``); errors answer 500 with the error text, as
    Consul's HTTP layer does for errors without a specific code."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = (
        "/v1/agent/join",
        "/v1/agent/leave",
        "/v1/agent/force-leave",
    )

    ops: IAgentGossipOps

    @app.route("/v1/agent/join/<path:addr>", methods=["PUT"])
    async def agent_join(self, request: Any, addr: str) -> bytes:
        try:
            await self.ops.join([addr], wan=_flag(request, b"wan"))
        except Exception as exc:  # every join error goes back to the caller
            return _fail(request, exc)
        return b""

    @app.route("/v1/agent/leave", methods=["PUT"])
    async def agent_leave(self, request: Any) -> bytes:
        try:
            await self.ops.leave_and_shutdown()
        except Exception as exc:
            return _fail(request, exc)
        return b""

    @app.route("/v1/agent/force-leave/<path:node>", methods=["PUT"])
    def agent_force_leave(self, request: Any, node: str) -> bytes:
        try:
            self.ops.force_leave(node, prune=_has_param(request, b"prune"))
        except Exception as exc:
            return _fail(request, exc)
        return b""
