# -*- test-case-name: tests.unit.gossip -*-
"""serf Lamport clocks, members, the events delivered upward and query response collectors."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred

from ..errors import GossipError
from .messages import MemberStatus

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
