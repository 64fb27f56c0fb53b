# -*- test-case-name: tests.unit.gossip -*-
"""serf node state and configuration shared by the mixins of the package."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wanfedtx.metrics import REGISTRY, Registry

from ..config import MemberlistConfig
from ..interfaces import IGossipTransport
from ..memberlist import (
    BroadcastQueue,
    Delegate,
    Memberlist,
)
from .events import Event, LamportClock, Member, MemberEvent, Query, QueryResponse, UserEvent
from .messages import (
    EVENT_BUFFER,
    QUERY_BUFFER,
    SERF_PROTOCOL_MAX,
    SERF_PROTOCOL_MIN,
    SERF_PROTOCOL_VERSION,
)

log = Logger(namespace="wanfedtx.gossip.serf")


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


class SerfBase(Delegate):
    """One serf node's state (owns its memberlist); ``Serf`` adds behaviour."""

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

    @property
    def name(self) -> str:
        return self.config.node_name

    def local_member(self) -> Member:
        return self.members[self.name]

    def member_list(self) -> list[Member]:
        return list(self.members.values())
