# -*- test-case-name: tests.unit.gossip -*-
"""serf message codec: types, intents, user events, queries, push/pull state, tag meta."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .. import wire
from ..errors import WireError

TAG_MAGIC = 0xFF
EVENT_BUFFER = 512
QUERY_BUFFER = 512
USER_EVENT_SIZE_LIMIT = 512
QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2
INTERNAL_QUERY_PREFIX = "_serf_"
#: serf protocol 4 -> memberlist delegate versions (min, max, cur) = 2, 5, 4
SERF_PROTOCOL_MIN, SERF_PROTOCOL_MAX, SERF_PROTOCOL_VERSION = 2, 5, 4


class MsgType(enum.IntEnum):
    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


class MemberStatus(enum.IntEnum):
    """serf ``MemberStatus`` (Consul's /v1/agent/members ``Status`` uses these numbers)."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    def label(self) -> str:
        return self.name.lower()


# ------------------------------------------------------------------------------------------
# Codec


@attrs.frozen
class JoinIntent(wire.Body):
    TYPE = MsgType.JOIN
    ltime: int = attrs.field(metadata=wire.go("LTime", "u64"))
    node: str = attrs.field(metadata=wire.go("Node", "str"))


@attrs.frozen
class LeaveIntent(wire.Body):
    TYPE = MsgType.LEAVE
    ltime: int = attrs.field(metadata=wire.go("LTime", "u64"))
    node: str = attrs.field(metadata=wire.go("Node", "str"))
    prune: bool = attrs.field(default=False, metadata=wire.go("Prune", "bool"))


@attrs.frozen
class UserEventMsg(wire.Body):
    TYPE = MsgType.USER_EVENT
    ltime: int = attrs.field(metadata=wire.go("LTime", "u64"))
    name: str = attrs.field(metadata=wire.go("Name", "str"))
    payload: bytes = attrs.field(default=b"", metadata=wire.go("Payload", "bytes"))
    cc: bool = attrs.field(default=False, metadata=wire.go("CC", "bool"))


@attrs.frozen
class QueryMsg(wire.Body):
    TYPE = MsgType.QUERY
    ltime: int = attrs.field(metadata=wire.go("LTime", "u64"))
    id: int = attrs.field(metadata=wire.go("ID", "u32"))
    addr: bytes = attrs.field(metadata=wire.go("Addr", "bytes"))
    port: int = attrs.field(metadata=wire.go("Port", "u16"))
    source_node: str = attrs.field(metadata=wire.go("SourceNode", "str"))
    flags: int = attrs.field(metadata=wire.go("Flags", "u32"))
    relay_factor: int = attrs.field(metadata=wire.go("RelayFactor", "u8"))
    timeout_ns: int = attrs.field(metadata=wire.go("Timeout", "int"))
    name: str = attrs.field(metadata=wire.go("Name", "str"))
    payload: bytes = attrs.field(default=b"", metadata=wire.go("Payload", "bytes"))
    filters: tuple[bytes, ...] = ()

    def to_map(self) -> dict[bytes, Any]:
        m = super().to_map()
        m[b"Filters"] = list(self.filters) if self.filters else None
        return dict(sorted(m.items()))

    @classmethod
    def from_obj(cls, obj: Any) -> QueryMsg:
        q = super().from_obj(obj)
        raw = wire.as_map(obj, "QueryMsg").get(b"Filters")
        if raw is None:
            return q
        if not isinstance(raw, list):
            raise WireError("field QueryMsg.Filters: expected an array")
        return attrs.evolve(q, filters=tuple(wire.go_bytes(f, "Filters") for f in raw))


@attrs.frozen
class QueryResponseMsg(wire.Body):
    TYPE = MsgType.QUERY_RESPONSE
    ltime: int = attrs.field(metadata=wire.go("LTime", "u64"))
    id: int = attrs.field(metadata=wire.go("ID", "u32"))
    from_: str = attrs.field(metadata=wire.go("From", "str"))
    flags: int = attrs.field(default=0, metadata=wire.go("Flags", "u32"))
    payload: bytes = attrs.field(default=b"", metadata=wire.go("Payload", "bytes"))


@attrs.frozen
class PushPullState:
    ltime: int
    status_ltimes: dict[str, int]
    left_members: list[str]
    event_ltime: int
    events: list[tuple[int, list[tuple[str, bytes]]] | None]
    query_ltime: int

    def encode(self) -> bytes:
        events: list[Any] = []
        for e in self.events:
            if e is None:
                events.append(None)
            else:
                events.append(
                    {
                        b"Events": [
                            {b"Name": wire.enc_str(n), b"Payload": wire.enc_bytes(p)}
                            for n, p in e[1]
                        ],
                        b"LTime": e[0],
                    }
                )
        body = {
            b"EventLTime": self.event_ltime,
            b"Events": events,
            b"LTime": self.ltime,
            b"LeftMembers": [wire.enc_str(n) for n in self.left_members],
            b"QueryLTime": self.query_ltime,
            b"StatusLTimes": {wire.enc_str(k): v for k, v in self.status_ltimes.items()},
        }
        return bytes((MsgType.PUSH_PULL,)) + wire.pack(body)

    @classmethod
    def decode_body(cls, buf: bytes) -> PushPullState:
        obj, _ = wire.unpack_one(buf)
        m = wire.as_map(obj, "messagePushPull")
        u64 = (0, (1 << 64) - 1)
        st_raw = m.get(b"StatusLTimes") or {}
        if not isinstance(st_raw, dict):
            raise WireError("StatusLTimes: expected a map")
        status = {
            wire.go_str(k, "StatusLTimes"): wire.go_int(v, "StatusLTimes", u64)
            for k, v in st_raw.items()
        }
        left_raw = m.get(b"LeftMembers") or []
        if not isinstance(left_raw, list):
            raise WireError("LeftMembers: expected an array")
        left = [wire.go_str(x, "LeftMembers") for x in left_raw]
        ev_raw = m.get(b"Events") or []
        if not isinstance(ev_raw, list):
            raise WireError("Events: expected an array")
        events: list[tuple[int, list[tuple[str, bytes]]] | None] = []
        for e in ev_raw:
            if e is None:
                events.append(None)
                continue
            em = wire.as_map(e, "userEvents")
            items = em.get(b"Events") or []
            if not isinstance(items, list):
                raise WireError("userEvents.Events: expected an array")
            evs = []
            for it in items:
                im = wire.as_map(it, "userEvent")
                evs.append(
                    (wire.go_str(im.get(b"Name"), "Name"), wire.go_bytes(im.get(b"Payload"), "P"))
                )
            events.append((wire.go_int(em.get(b"LTime"), "LTime", u64), evs))
        return cls(
            ltime=wire.go_int(m.get(b"LTime"), "LTime", u64),
            status_ltimes=status,
            left_members=left,
            event_ltime=wire.go_int(m.get(b"EventLTime"), "EventLTime", u64),
            events=events,
            query_ltime=wire.go_int(m.get(b"QueryLTime"), "QueryLTime", u64),
        )


def encode_tags(tags: dict[str, str]) -> bytes:
    """Node meta for serf protocol >= 3: 0xff + msgpack map (keys sorted for stable bytes)."""
    return bytes((TAG_MAGIC,)) + wire.pack(
        {k.encode(): v.encode() for k, v in sorted(tags.items())}
    )


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from node meta; meta without the magic byte is the role (old serf)."""
    if not meta or meta[0] != TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")} if meta else {}
    obj, _ = wire.unpack_one(meta[1:])
    m = wire.as_map(obj, "tags")
    return {wire.go_str(k, "tag"): wire.go_str(v, "tag") for k, v in m.items()}
