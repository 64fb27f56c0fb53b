"""Consul's ``/v1/agent/members`` for serf pools: JSON shape and a Klein mount.

``member_json`` gives Consul's ``api.AgentMember`` (``Status`` is serf's number: 1 alive,
2 leaving, 3 left, 4 failed). ``mount_agent_members(app, lan, wan)`` serves
``GET /v1/agent/members`` (LAN pool) and ``?wan=1`` (WAN pool); the pools are looked up on each
request so the agent can start and stop them freely.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from klein import Klein

from .serf import Member, Serf

PoolGetter = Callable[[], Serf | None]


def member_json(m: Member) -> dict[str, Any]:
    v = (bytes(m.vsn) + b"\x00" * 6)[:6]
    return {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": dict(m.tags),
        "Status": int(m.status),
        "ProtocolMin": v[0],
        "ProtocolMax": v[1],
        "ProtocolCur": v[2],
        "DelegateMin": v[3],
        "DelegateMax": v[4],
        "DelegateCur": v[5],
    }


def members_json(pool: Serf) -> list[dict[str, Any]]:
    return [member_json(m) for m in sorted(pool.member_list(), key=lambda m: m.name)]


def mount_agent_members(app: Klein, lan: PoolGetter, wan: PoolGetter) -> None:
    @app.route("/v1/agent/members", methods=["GET"])
    def agent_members(request: Any) -> bytes:
        args = request.args
        want_wan = args.get(b"wan", [b""])[0] not in (b"", b"0", b"false")
        pool = wan() if want_wan else lan()
        request.setHeader(b"Content-Type", b"application/json")
        if pool is None:
            # Consul answers a client agent's ?wan=1 with an empty list.
            return b"[]"
        return json.dumps(members_json(pool)).encode()
