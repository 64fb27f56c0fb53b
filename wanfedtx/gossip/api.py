# -*- test-case-name: tests.unit.gossip -*-
"""Consul's ``api.AgentMember`` JSON shape of serf pool members (``/v1/agent/members``).

``member_json`` gives one member (``Status`` is serf's number: 1 alive, 2 leaving, 3 left,
4 failed); ``members_json`` a pool's members sorted by name. The HTTP routes live in
``wanfedtx.http.gossip``.
"""

from __future__ import annotations

from typing import Any

from .serf import Member, Serf


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
