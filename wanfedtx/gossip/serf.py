"""Serf 0.9.4-compatible layer over memberlist: tags, Lamport clocks, intents, events, queries.

Serf messages travel as memberlist user messages (type 8) whose first byte is the serf type
(spec memberlist-wire.md section 7): 0 leave intent, 1 join intent, 2 push/pull state, 3 user
event, 4 query, 5 query response, 9 relay. Node meta is ``0xff`` + msgpack ``map[string]string``.
Member states: alive, leaving, left, failed; failed and left members are reaped after
``reconnect_timeout`` / ``tombstone_timeout``. A graceful ``leave`` sends the leave intent first,
then memberlist's leave, so peers report *left* rather than *failed*.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import msgpack
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wanfedtx.metrics import REGISTRY, Registry

from . import wire
from .config import MemberlistConfig
from .errors import GossipError, WireError
from .interfaces import Address, IGossipTransport
from .memberlist import BroadcastQueue, Delegate, Memberlist, NodeInfo, format_host, ip_string

log = Logger(namespace="wanfedtx.gossip.serf")

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
    FIELDS = (("LTime", "ltime", "u64", False), ("Node", "node", "str", False))
    ltime: int
    node: str


@attrs.frozen
class LeaveIntent(wire.Body):
    TYPE = MsgType.LEAVE
    FIELDS = (
        ("LTime", "ltime", "u64", False),
        ("Node", "node", "str", False),
        ("Prune", "prune", "bool", False),
    )
    ltime: int
    node: str
    prune: bool = False


@attrs.frozen
class UserEventMsg(wire.Body):
    TYPE = MsgType.USER_EVENT
    FIELDS = (
        ("LTime", "ltime", "u64", False),
        ("Name", "name", "str", False),
        ("Payload", "payload", "bytes", False),
        ("CC", "cc", "bool", False),
    )
    ltime: int
    name: str
    payload: bytes = b""
    cc: bool = False


@attrs.frozen
class QueryMsg(wire.Body):
    TYPE = MsgType.QUERY
    FIELDS = (
        ("LTime", "ltime", "u64", False),
        ("ID", "id", "u32", False),
        ("Addr", "addr", "bytes", False),
        ("Port", "port", "u16", False),
        ("SourceNode", "source_node", "str", False),
        ("Flags", "flags", "u32", False),
        ("RelayFactor", "relay_factor", "u8", False),
        ("Timeout", "timeout_ns", "int", False),
        ("Name", "name", "str", False),
        ("Payload", "payload", "bytes", False),
    )
    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    flags: int
    relay_factor: int
    timeout_ns: int
    name: str
    payload: bytes = b""
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
    FIELDS = (
        ("LTime", "ltime", "u64", False),
        ("ID", "id", "u32", False),
        ("From", "from_", "str", False),
        ("Flags", "flags", "u32", False),
        ("Payload", "payload", "bytes", False),
    )
    ltime: int
    id: int
    from_: str
    flags: int = 0
    payload: bytes = b""


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


# ------------------------------------------------------------------------------------------
# Clocks, members, events


class LamportClock:
    def __init__(self) -> None:
        self.counter = 0

    def time(self) -> int:
        return self.counter

    def increment(self) -> int:
        self.counter += 1
        return self.counter

    def witness(self, t: int) -> None:
        if t >= self.counter:
            self.counter = t + 1


@attrs.define
class Member:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: MemberStatus
    vsn: bytes
    status_ltime: int = 0
    leave_time: float = 0.0


@attrs.frozen
class MemberEvent:
    type: str  # member-join, member-leave, member-failed, member-update, member-reap
    members: tuple[Member, ...]


@attrs.frozen
class UserEvent:
    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@attrs.define
class Query:
    """A query delivered to us; call ``respond(payload)`` at most once before the deadline."""

    ltime: int
    name: str
    payload: bytes
    deadline: float
    _respond: Callable[[bytes], None]
    responded: bool = False

    def respond(self, payload: bytes) -> None:
        if self.responded:
            raise GossipError("response already sent")
        self.responded = True
        self._respond(payload)


Event = MemberEvent | UserEvent | Query


@attrs.define
class QueryResponse:
    """What our own query collects: acks (node names) and responses (node -> payload)."""

    id: int
    ltime: int
    deadline: float
    acks: list[str] = attrs.Factory(list)
    responses: dict[str, bytes] = attrs.Factory(dict)
    finished: Deferred[None] = attrs.Factory(Deferred)


@attrs.define
class SerfConfig:
    node_name: str
    memberlist: MemberlistConfig
    tags: dict[str, str] = attrs.Factory(dict)
    protocol_version: int = SERF_PROTOCOL_VERSION
    broadcast_timeout: float = 5.0
    leave_propagate_delay: float = 1.0
    reap_interval: float = 15.0
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    tombstone_timeout: float = 24 * 3600.0
    query_timeout_mult: int = 16
    recent_intent_timeout: float = 300.0
    #: Serf's MergeDelegate: return an error string to refuse a join/push-pull merge.
    merge_check: Callable[[list[Member]], str | None] | None = None


class Serf(Delegate):
    """One serf node (owns its memberlist)."""

    def __init__(
        self,
        config: SerfConfig,
        transport: IGossipTransport,
        clock: IReactorTime,
        rng: random.Random | None = None,
        on_event: Callable[[Event], None] | None = None,
        registry: Registry | None = None,
    ) -> None:
        reg = registry if registry is not None else REGISTRY
        self._m_member = {
            k: reg.counter(f"serf.member.{k}", f"serf members that became {k}")
            for k in ("join", "failed", "left", "update", "reap")
        }
        self._m_events = reg.counter("serf.events", "serf user events received")
        self._m_queries = reg.counter("serf.queries", "serf queries received")
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._user_on_event = on_event or (lambda e: None)
        self.member_clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self.members: dict[str, Member] = {}
        self.recent_intents: dict[str, tuple[int, int, float]] = {}  # node -> (type, ltime, t)
        self.event_buffer: list[tuple[int, list[tuple[str, bytes]]] | None] = [None] * EVENT_BUFFER
        self.event_min_time = 0
        self.query_buffer: list[tuple[int, set[int]] | None] = [None] * QUERY_BUFFER
        self.queries: dict[int, QueryResponse] = {}
        self.leaving = False
        ml_cfg = config.memberlist
        ml_cfg.name = config.node_name
        ml_cfg.delegate_protocol_min = SERF_PROTOCOL_MIN
        ml_cfg.delegate_protocol_max = SERF_PROTOCOL_MAX
        ml_cfg.delegate_protocol_version = config.protocol_version
        n = self._num_nodes
        self.broadcasts = BroadcastQueue(ml_cfg.retransmit_mult, n)
        self.event_broadcasts = BroadcastQueue(ml_cfg.retransmit_mult, n)
        self.query_broadcasts = BroadcastQueue(ml_cfg.retransmit_mult, n)
        self._reap_call: IDelayedCall | None = None
        self._reconnect_call: IDelayedCall | None = None
        self.memberlist = Memberlist(ml_cfg, transport, clock, self.rng, self, reg)

    @property
    def on_event(self) -> Callable[[Event], None]:
        return self._count_and_deliver

    @on_event.setter
    def on_event(self, fn: Callable[[Event], None]) -> None:
        self._user_on_event = fn

    def _count_and_deliver(self, ev: Event) -> None:
        if isinstance(ev, MemberEvent):
            kind = ev.type.removeprefix("member-")
            key = {"leave": "left"}.get(kind, kind)
            if key in self._m_member:
                self._m_member[key].inc(len(ev.members))
        elif isinstance(ev, UserEvent):
            self._m_events.inc()
        elif isinstance(ev, Query):
            self._m_queries.inc()
        self._user_on_event(ev)

    def _num_nodes(self) -> int:
        return max(1, len(self.members))

    # -- lifecycle

    def start(self) -> None:
        self.memberlist.start()
        self._reap_call = self.clock.callLater(self.config.reap_interval, self._reap_tick)
        self._reconnect_call = self.clock.callLater(
            self.config.reconnect_interval, self._reconnect_tick
        )

    def shutdown(self) -> Deferred[None]:
        for call in (self._reap_call, self._reconnect_call):
            if call is not None and call.active():
                call.cancel()
        self._reap_call = self._reconnect_call = None
        for q in self.queries.values():
            if not q.finished.called:
                q.finished.callback(None)
        self.queries.clear()
        return self.memberlist.shutdown()

    @property
    def name(self) -> str:
        return self.config.node_name

    def local_member(self) -> Member:
        return self.members[self.name]

    def member_list(self) -> list[Member]:
        return list(self.members.values())

    async def join(self, existing: Sequence[str]) -> int:
        """Join through memberlist, then broadcast our join intent."""
        n = await self.memberlist.join(existing)
        self._broadcast_join(self.member_clock.time())
        return n

    def _broadcast_join(self, ltime: int) -> None:
        msg = JoinIntent(ltime, self.name)
        self.member_clock.witness(ltime)
        self._handle_join_intent(msg)
        self.broadcasts.queue(msg.encode(), name=None)

    async def leave(self) -> None:
        """Leave intent first (waits until sent), then memberlist leave, then propagate delay."""
        from twisted.internet import task

        if self.leaving:
            return
        self.leaving = True
        ltime = self.member_clock.time()
        self.member_clock.increment()
        msg = LeaveIntent(ltime, self.name, False)
        self._handle_leave_intent(msg)
        if self.memberlist.num_alive() > 1:
            sent: Deferred[None] = Deferred()

            def fire() -> None:
                if not sent.called:
                    sent.callback(None)

            self.broadcasts.queue(msg.encode(), name=None, on_done=fire)
            timer = self.clock.callLater(self.config.broadcast_timeout, fire)
            await sent
            if timer.active():
                timer.cancel()
        try:
            await self.memberlist.leave(self.config.broadcast_timeout)
        except GossipError as exc:
            log.warn("serf: timeout waiting for leave broadcast: {error}", error=str(exc))
        if self.config.leave_propagate_delay > 0:
            await task.deferLater(self.clock, self.config.leave_propagate_delay, lambda: None)

    def user_event(self, name: str, payload: bytes, coalesce: bool = False) -> None:
        if len(name) + len(payload) > USER_EVENT_SIZE_LIMIT:
            raise GossipError(
                f"user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before "
                "encoding"
            )
        ltime = self.event_clock.time()
        self.event_clock.increment()
        msg = UserEventMsg(ltime, name, payload, coalesce)
        self._handle_user_event(msg)
        self.event_broadcasts.queue(msg.encode())

    def default_query_timeout(self) -> float:
        n = self.memberlist.num_alive()
        return (
            self.config.memberlist.gossip_interval
            * self.config.query_timeout_mult
            * math.ceil(math.log10(n + 1))
        )

    def query(
        self, name: str, payload: bytes, request_ack: bool = True, timeout: float | None = None
    ) -> QueryResponse:
        """Broadcast a query; the returned object collects acks and responses until the deadline."""
        timeout = timeout or self.default_query_timeout()
        ltime = self.query_clock.time()
        self.query_clock.increment()
        qid = self.rng.getrandbits(32)
        me = self.memberlist.local_node()
        from .memberlist import ip_bytes

        q = QueryMsg(
            ltime,
            qid,
            ip_bytes(me.addr),
            me.port,
            self.name,
            QUERY_FLAG_ACK if request_ack else 0,
            0,
            int(timeout * 1e9),
            name,
            payload,
        )
        resp = QueryResponse(qid, ltime, self.clock.seconds() + timeout)
        self.queries[ltime] = resp

        def close() -> None:
            self.queries.pop(ltime, None)
            if not resp.finished.called:
                resp.finished.callback(None)

        self.clock.callLater(timeout, close)
        self._handle_query(q)
        self.query_broadcasts.queue(q.encode())
        return resp

    # -- memberlist delegate

    def node_meta(self, limit: int) -> bytes:
        meta = encode_tags(self.config.tags)
        if len(meta) > limit:
            raise GossipError(f"Encoded length of tags exceeds limit of {limit} bytes")
        return meta

    def notify_msg(self, data: bytes) -> None:
        if not data:
            return
        t = data[0]
        try:
            rebroadcast = False
            queue = self.broadcasts
            if t == MsgType.LEAVE:
                rebroadcast = self._handle_leave_intent(LeaveIntent.decode_body(data[1:]))
            elif t == MsgType.JOIN:
                rebroadcast = self._handle_join_intent(JoinIntent.decode_body(data[1:]))
            elif t == MsgType.USER_EVENT:
                rebroadcast = self._handle_user_event(UserEventMsg.decode_body(data[1:]))
                queue = self.event_broadcasts
            elif t == MsgType.QUERY:
                rebroadcast = self._handle_query(QueryMsg.decode_body(data[1:]))
                queue = self.query_broadcasts
            elif t == MsgType.QUERY_RESPONSE:
                self._handle_query_response(QueryResponseMsg.decode_body(data[1:]))
            elif t == MsgType.RELAY:
                self._handle_relay(data[1:])
            else:
                log.warn("serf: Received message of unknown type {t}", t=t)
            if rebroadcast:
                queue.queue(bytes(data))
        except WireError as exc:
            log.warn("serf: Failed to decode message type {t}: {error}", t=t, error=str(exc))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self.broadcasts.get(overhead, limit)
        used = sum(len(m) + overhead for m in out)
        q = self.query_broadcasts.get(overhead, limit - used)
        used += sum(len(m) + overhead for m in q)
        e = self.event_broadcasts.get(overhead, limit - used)
        return out + q + e

    def local_state(self, join: bool) -> bytes:
        left = [m.name for m in self.members.values() if m.status == MemberStatus.LEFT]
        return PushPullState(
            ltime=self.member_clock.time(),
            status_ltimes={m.name: m.status_ltime for m in self.members.values()},
            left_members=left,
            event_ltime=self.event_clock.time(),
            events=list(self.event_buffer),
            query_ltime=self.query_clock.time(),
        ).encode()

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        if not buf or buf[0] != MsgType.PUSH_PULL:
            log.warn("serf: Remote state has bad type prefix: {t}", t=buf[:1].hex())
            return
        try:
            pp = PushPullState.decode_body(buf[1:])
        except WireError as exc:
            log.error("serf: Failed to decode remote state: {error}", error=str(exc))
            return
        if pp.ltime > 0:
            self.member_clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left = set(pp.left_members)
        for name in left:
            self._handle_leave_intent(LeaveIntent(pp.status_ltimes.get(name, 0), name, False))
        for name, lt in pp.status_ltimes.items():
            if name not in left:
                self._handle_join_intent(JoinIntent(lt, name))
        for e in pp.events:
            if e is None:
                continue
            for n, p in e[1]:
                self._handle_user_event(UserEventMsg(e[0], n, p, False))

    def notify_merge(self, peers: list[NodeInfo]) -> str | None:
        if self.config.merge_check is None:
            return None
        members = []
        for n in peers:
            try:
                tags = decode_tags(n.meta)
            except WireError:
                tags = {}
            members.append(Member(n.name, n.addr, n.port, tags, MemberStatus.ALIVE, n.vsn))
        return self.config.merge_check(members)

    def notify_alive(self, node: NodeInfo) -> str | None:
        if self.config.merge_check is None:
            return None
        return self.notify_merge([node])

    def notify_join(self, node: NodeInfo) -> None:
        try:
            tags = decode_tags(node.meta)
        except WireError as exc:
            log.warn("serf: bad tags from {node}: {error}", node=node.name, error=str(exc))
            tags = {}
        m = self.members.get(node.name)
        if m is None:
            m = Member(node.name, node.addr, node.port, tags, MemberStatus.ALIVE, node.vsn)
            self.members[node.name] = m
            intent = self.recent_intents.pop(node.name, None)
            if intent is not None:
                typ, lt, _ = intent
                if lt > m.status_ltime:
                    m.status_ltime = lt
                    if typ == MsgType.LEAVE:
                        m.status = MemberStatus.LEAVING
        else:
            m.addr, m.port, m.tags, m.vsn = node.addr, node.port, tags, node.vsn
            m.status = MemberStatus.ALIVE
            m.leave_time = 0.0
        self.on_event(MemberEvent("member-join", (attrs.evolve(m),)))

    def notify_leave(self, node: NodeInfo) -> None:
        m = self.members.get(node.name)
        if m is None:
            return
        if m.status == MemberStatus.LEAVING:
            m.status = MemberStatus.LEFT
            kind = "member-leave"
        else:
            m.status = MemberStatus.FAILED
            kind = "member-failed"
        m.leave_time = self.clock.seconds()
        self.on_event(MemberEvent(kind, (attrs.evolve(m),)))

    def notify_update(self, node: NodeInfo) -> None:
        m = self.members.get(node.name)
        if m is None:
            return
        try:
            m.tags = decode_tags(node.meta)
        except WireError:
            return
        m.addr, m.port, m.vsn = node.addr, node.port, node.vsn
        self.on_event(MemberEvent("member-update", (attrs.evolve(m),)))

    # -- handlers

    def _handle_join_intent(self, msg: JoinIntent) -> bool:
        self.member_clock.witness(msg.ltime)
        m = self.members.get(msg.node)
        if m is None:
            return self._recent_intent(msg.node, MsgType.JOIN, msg.ltime)
        if msg.ltime <= m.status_ltime:
            return False
        m.status_ltime = msg.ltime
        if m.status == MemberStatus.LEAVING:
            m.status = MemberStatus.ALIVE
        return True

    def _handle_leave_intent(self, msg: LeaveIntent) -> bool:
        self.member_clock.witness(msg.ltime)
        m = self.members.get(msg.node)
        if m is None:
            return self._recent_intent(msg.node, MsgType.LEAVE, msg.ltime)
        if msg.ltime <= m.status_ltime:
            return False
        if msg.node == self.name and not self.leaving:
            # Refute a stale leave intent about ourselves.
            self._broadcast_join(self.member_clock.time())
            return False
        if m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.LEAVING
            m.status_ltime = msg.ltime
            return True
        if m.status == MemberStatus.FAILED:
            m.status = MemberStatus.LEFT
            m.status_ltime = msg.ltime
            self.on_event(MemberEvent("member-leave", (attrs.evolve(m),)))
            return True
        return False

    def _recent_intent(self, node: str, typ: int, ltime: int) -> bool:
        cur = self.recent_intents.get(node)
        if cur is not None and cur[1] >= ltime:
            return False
        self.recent_intents[node] = (typ, ltime, self.clock.seconds())
        return True

    def _handle_user_event(self, msg: UserEventMsg) -> bool:
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            return False
        cur = self.event_clock.time()
        if cur > EVENT_BUFFER and msg.ltime < cur - EVENT_BUFFER:
            log.warn(
                "serf: received old event {name} from time {lt} (current: {cur})",
                name=msg.name,
                lt=msg.ltime,
                cur=cur,
            )
            return False
        idx = msg.ltime % EVENT_BUFFER
        seen = self.event_buffer[idx]
        item = (msg.name, msg.payload)
        if seen is not None and seen[0] == msg.ltime:
            if item in seen[1]:
                return False
            seen[1].append(item)
        else:
            self.event_buffer[idx] = (msg.ltime, [item])
        self.on_event(UserEvent(msg.ltime, msg.name, msg.payload, msg.cc))
        return True

    def _handle_query(self, q: QueryMsg) -> bool:
        self.query_clock.witness(q.ltime)
        cur = self.query_clock.time()
        if cur > QUERY_BUFFER and q.ltime < cur - QUERY_BUFFER:
            return False
        idx = q.ltime % QUERY_BUFFER
        seen = self.query_buffer[idx]
        if seen is not None and seen[0] == q.ltime:
            if q.id in seen[1]:
                return False
            seen[1].add(q.id)
        else:
            self.query_buffer[idx] = (q.ltime, {q.id})
        rebroadcast = not (q.flags & QUERY_FLAG_NO_BROADCAST)
        if not self._should_process(q):
            return rebroadcast
        reply_to = Address(f"{format_host(ip_string(q.addr))}:{q.port}", q.source_node)
        if q.flags & QUERY_FLAG_ACK:
            ack = QueryResponseMsg(q.ltime, q.id, self.name, QUERY_FLAG_ACK)
            self._send_response(reply_to, ack)

        def respond(payload: bytes) -> None:
            self._send_response(reply_to, QueryResponseMsg(q.ltime, q.id, self.name, 0, payload))

        if q.name.startswith(INTERNAL_QUERY_PREFIX):
            # _serf_ping needs only the ack; other internal queries (conflict, keys) unsupported.
            return rebroadcast
        self.on_event(
            Query(q.ltime, q.name, q.payload, self.clock.seconds() + q.timeout_ns / 1e9, respond)
        )
        return rebroadcast

    def _send_response(self, to: Address, msg: QueryResponseMsg) -> None:
        if to.name == self.name:
            self._handle_query_response(msg)
            return
        try:
            self.memberlist.send_to_address(to, msg.encode())
        except GossipError as exc:
            log.warn("serf: failed to send query response: {error}", error=str(exc))

    def _should_process(self, q: QueryMsg) -> bool:
        for f in q.filters:
            if not f:
                return False
            try:
                obj, _ = wire.unpack_one(f[1:])
            except WireError:
                return False
            if f[0] == 0:
                names = [wire.go_str(x, "filter") for x in obj] if isinstance(obj, list) else []
                if self.name not in names:
                    return False
            elif f[0] == 1:
                m = wire.as_map(obj, "filterTag")
                tag = wire.go_str(m.get(b"Tag"), "Tag")
                expr = wire.go_str(m.get(b"Expr"), "Expr")
                val = self.config.tags.get(tag)
                if val is None or re.search(expr, val) is None:
                    return False
            else:
                return False
        return True

    def _handle_query_response(self, r: QueryResponseMsg) -> None:
        q = self.queries.get(r.ltime)
        if q is None or q.id != r.id or self.clock.seconds() > q.deadline:
            return
        if r.flags & QUERY_FLAG_ACK:
            if r.from_ not in q.acks:
                q.acks.append(r.from_)
        elif r.from_ not in q.responses:
            q.responses[r.from_] = r.payload

    def _handle_relay(self, body: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(body)
        try:
            header = unpacker.unpack()
        except Exception as exc:
            raise WireError(f"bad relay header: {exc}") from None
        h = wire.as_map(header, "relayHeader")
        dest = wire.as_map(h.get(b"DestAddr") or {}, "DestAddr")
        ip = ip_string(wire.go_bytes(dest.get(b"IP"), "IP"))
        port = wire.go_int(dest.get(b"Port"), "Port", (0, 65535))
        name = wire.go_str(h.get(b"DestName"), "DestName")
        rest = body[unpacker.tell() :]
        if ip and port and rest:
            self.memberlist.send_to_address(Address(f"{format_host(ip)}:{port}", name), rest)

    # -- reconnect and reaping

    def _reconnect_tick(self) -> None:
        """Try to rejoin one failed member now and then (serf's reconnect, throttled by the
        failed/alive ratio), so partitions heal."""
        self._reconnect_call = self.clock.callLater(
            self.config.reconnect_interval, self._reconnect_tick
        )
        failed = [m for m in self.members.values() if m.status == MemberStatus.FAILED]
        if not failed:
            return
        left = sum(1 for m in self.members.values() if m.status == MemberStatus.LEFT)
        alive = max(len(self.members) - len(failed) - left, 1)
        if self.rng.random() > len(failed) / alive:
            log.debug("serf: forgoing reconnect for random throttling")
            return
        m = self.rng.choice(failed)
        addr = f"{m.name}/{format_host(m.addr)}:{m.port}"
        log.info("serf: attempting reconnect to {node} {addr}", node=m.name, addr=addr)
        self.memberlist.join([addr]).addErrback(lambda f: None)

    def _reap_tick(self) -> None:
        now = self.clock.seconds()
        for m in list(self.members.values()):
            if m.name == self.name:
                continue
            if m.status == MemberStatus.FAILED:
                limit = self.config.reconnect_timeout
            elif m.status == MemberStatus.LEFT:
                limit = self.config.tombstone_timeout
            else:
                continue
            if now - m.leave_time > limit:
                del self.members[m.name]
                self.on_event(MemberEvent("member-reap", (attrs.evolve(m),)))
        for node, (_t, _lt, at) in list(self.recent_intents.items()):
            if now - at > self.config.recent_intent_timeout:
                del self.recent_intents[node]
        self._reap_call = self.clock.callLater(self.config.reap_interval, self._reap_tick)
