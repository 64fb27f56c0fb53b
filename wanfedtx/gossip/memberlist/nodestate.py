# -*- test-case-name: tests.unit.gossip.test_gossip_nodestate -*-
"""The alive/suspect/dead/refute transitions as a pure function.

``transition(member, suspicion, local, message, now) -> Step(member, local_incarnation, effects)``
decides what memberlist 0.2.2's ``aliveNode``/``suspectNode``/``deadNode``/``refute`` decide,
for one member, without timers, Deferreds, delegates or logging: the caller
(``memberlist.state.StateMixin``) applies the returned member record and carries out the effects
in order (queue a broadcast, start/confirm/cancel the suspicion timer, tell the delegate, log).

Messages are the wire bodies (``wire.Alive``, ``wire.Suspect``, ``wire.Dead``), ``LocalAlive``
(our own alive: start-up or a meta update) and ``SuspicionExpired`` (the suspicion timer fired).
Effects that happen before the member record is written (``before_update``) come first in the
list; ``StartSuspicion`` and the ``Notify*`` effects see the written record.
"""

from __future__ import annotations

import attrs

from .. import wire
from ..wire import NodeStateType
from .node import ip_string


@attrs.frozen
class MemberView:
    """What the core knows of one member (an immutable copy of ``memberlist.node.Node``)."""

    name: str
    addr: bytes
    port: int
    meta: bytes = b""
    incarnation: int = 0
    state: NodeStateType = NodeStateType.DEAD
    state_change: float = 0.0
    vsn: bytes = b"\x00" * 6

    def dead_or_left(self) -> bool:
        return self.state in (NodeStateType.DEAD, NodeStateType.LEFT)


@attrs.frozen
class SuspicionView:
    """A running suspicion: how many confirmations it takes (``k``) and who has accused."""

    k: int
    confirmations: frozenset[str]

    def accepts(self, from_: str) -> bool:
        """Whether ``from_`` is a new, still counted confirmation (``Suspicion.confirm``)."""
        return len(self.confirmations) - 1 < self.k and from_ not in self.confirmations


@attrs.frozen
class Local:
    """The local node as the transitions need it."""

    name: str
    #: our incarnation counter (``Memberlist.incarnation``)
    incarnation: int
    #: the Vsn we advertise (put into a refuting alive)
    vsn: bytes
    leaving: bool = False
    #: ``MemberlistConfig.dead_node_reclaim_time`` (0: a dead node's address is never reclaimed)
    dead_node_reclaim_time: float = 0.0


# -- messages that are not wire bodies


@attrs.frozen
class LocalAlive:
    """Our own alive (start-up, meta update): applied, never refuted."""

    alive: wire.Alive


@attrs.frozen
class SuspicionExpired:
    """The suspicion timer of ``node`` started at ``started_at`` fired."""

    node: str
    started_at: float
    confirmations: int


Message = wire.Alive | wire.Suspect | wire.Dead | LocalAlive | SuspicionExpired


# -- effects


@attrs.frozen
class Broadcast:
    """Queue ``msg`` for gossip, replacing any queued message about ``node``."""

    node: str
    msg: wire.Alive | wire.Suspect | wire.Dead


@attrs.frozen
class Refuted:
    """We refuted an accusation: the local incarnation is now ``incarnation``; awareness +1."""

    incarnation: int


@attrs.frozen
class StartSuspicion:
    node: str
    from_: str
    started_at: float


@attrs.frozen
class ConfirmSuspicion:
    node: str
    from_: str


@attrs.frozen
class CancelSuspicion:
    node: str


@attrs.frozen
class NotifyJoin:
    member: MemberView


@attrs.frozen
class NotifyUpdate:
    member: MemberView


@attrs.frozen
class NotifyLeave:
    member: MemberView


@attrs.frozen
class Log:
    """A log line: ``level`` is ``debug``/``info``/``warn``/``error``; ``fields`` fill ``fmt``."""

    level: str
    fmt: str
    fields: tuple[tuple[str, object], ...] = ()


Effect = (
    Broadcast
    | Refuted
    | StartSuspicion
    | ConfirmSuspicion
    | CancelSuspicion
    | NotifyJoin
    | NotifyUpdate
    | NotifyLeave
    | Log
)


def before_update(effect: Effect) -> bool:
    """Effects carried out before the member record is written (the order of memberlist)."""
    return not isinstance(effect, StartSuspicion | NotifyJoin | NotifyUpdate | NotifyLeave)


@attrs.frozen
class Step:
    """The outcome of one message: the member record (``None``: still unknown), our incarnation
    counter and the effects, in order."""

    member: MemberView | None
    incarnation: int
    effects: tuple[Effect, ...] = ()


def transition(
    member: MemberView | None,
    suspicion: SuspicionView | None,
    local: Local,
    msg: Message,
    now: float,
) -> Step:
    """Apply one message about ``member`` (``msg``'s node) at time ``now``."""
    if isinstance(msg, LocalAlive):
        return _alive(member, suspicion, local, msg.alive, now, bootstrap=True)
    if isinstance(msg, wire.Alive):
        return _alive(member, suspicion, local, msg, now, bootstrap=False)
    if isinstance(msg, wire.Suspect):
        return _suspect(member, suspicion, local, msg, now)
    if isinstance(msg, wire.Dead):
        return _dead(member, suspicion, local, msg, now)
    return _expired(member, local, msg, now)


def _refute(me: MemberView, local: Local, accused_inc: int, before: list[Effect], why: Log) -> Step:
    """We are accused: the refuting step (``before``, the refuting alive, then the ``why`` line)."""
    inc = local.incarnation + 1
    if accused_inc >= inc:
        inc = accused_inc + 1
    me = attrs.evolve(me, incarnation=inc)
    alive = wire.Alive(inc, me.name, me.addr, me.port, me.meta, local.vsn)
    return Step(me, inc, (*before, Refuted(inc), Broadcast(me.name, alive), why))


def _alive(
    member: MemberView | None,
    suspicion: SuspicionView | None,
    local: Local,
    a: wire.Alive,
    now: float,
    bootstrap: bool,
) -> Step:
    inc = local.incarnation
    if local.leaving and a.node == local.name:
        return Step(member, inc)
    effects: list[Effect] = []
    updates_node = False
    if member is None:
        member = MemberView(a.node, a.addr, a.port, state=NodeStateType.DEAD, state_change=now)
    elif member.addr != a.addr or member.port != a.port:
        reclaim = local.dead_node_reclaim_time
        can_reclaim = reclaim > 0 and now - member.state_change > reclaim
        if member.state == NodeStateType.LEFT or (
            member.state == NodeStateType.DEAD and can_reclaim
        ):
            effects.append(
                Log(
                    "info",
                    "memberlist: Updating address for left or failed node {node}",
                    (("node", member.name),),
                )
            )
            updates_node = True
        else:
            effects.append(
                Log(
                    "error",
                    "memberlist: Conflicting address for {node}. Mine: {mine} Theirs: {theirs} "
                    "Old state: {old}",
                    (
                        ("node", member.name),
                        ("mine", f"{ip_string(member.addr)}:{member.port}"),
                        ("theirs", f"{ip_string(a.addr)}:{a.port}"),
                        ("old", member.state.name),
                    ),
                )
            )
            return Step(member, inc, tuple(effects))
    is_local = a.node == local.name
    if a.incarnation <= member.incarnation and not is_local and not updates_node:
        return Step(member, inc, tuple(effects))
    if a.incarnation < member.incarnation and is_local:
        return Step(member, inc, tuple(effects))
    if suspicion is not None:
        effects.append(CancelSuspicion(a.node))
    old_state = member.state
    old_meta = member.meta
    if not bootstrap and is_local:
        if (
            a.incarnation == member.incarnation
            and a.meta == member.meta
            and wire.vsn_tuple(a.vsn) == wire.vsn_tuple(member.vsn)
        ):
            return Step(member, inc, tuple(effects))
        return _refute(
            member,
            local,
            a.incarnation,
            effects,
            Log("warn", "memberlist: Refuting an alive message for '{node}'", (("node", a.node),)),
        )
    effects.append(Broadcast(a.node, a))
    member = attrs.evolve(
        member,
        vsn=bytes(a.vsn),
        incarnation=a.incarnation,
        meta=bytes(a.meta),
        addr=bytes(a.addr),
        port=a.port,
    )
    if member.state != NodeStateType.ALIVE:
        member = attrs.evolve(member, state=NodeStateType.ALIVE, state_change=now)
    if old_state in (NodeStateType.DEAD, NodeStateType.LEFT):
        effects.append(NotifyJoin(member))
    elif old_meta != member.meta:
        effects.append(NotifyUpdate(member))
    return Step(member, inc, tuple(effects))


def _suspect(
    member: MemberView | None,
    suspicion: SuspicionView | None,
    local: Local,
    s: wire.Suspect,
    now: float,
) -> Step:
    inc = local.incarnation
    if member is None or s.incarnation < member.incarnation:
        return Step(member, inc)
    if suspicion is not None:
        if suspicion.accepts(s.from_):
            return Step(member, inc, (ConfirmSuspicion(s.node, s.from_), Broadcast(s.node, s)))
        return Step(member, inc)
    if member.state != NodeStateType.ALIVE:
        return Step(member, inc)
    if member.name == local.name:
        return _refute(
            member,
            local,
            s.incarnation,
            [],
            Log(
                "warn", "memberlist: Refuting a suspect message (from: {src})", (("src", s.from_),)
            ),
        )
    member = attrs.evolve(
        member, incarnation=s.incarnation, state=NodeStateType.SUSPECT, state_change=now
    )
    return Step(member, inc, (Broadcast(s.node, s), StartSuspicion(s.node, s.from_, now)))


def _dead(
    member: MemberView | None,
    suspicion: SuspicionView | None,
    local: Local,
    d: wire.Dead,
    now: float,
) -> Step:
    inc = local.incarnation
    if member is None or d.incarnation < member.incarnation:
        return Step(member, inc)
    effects: list[Effect] = []
    if suspicion is not None:
        effects.append(CancelSuspicion(d.node))
    if member.dead_or_left():
        return Step(member, inc, tuple(effects))
    if member.name == local.name and not local.leaving:
        return _refute(
            member,
            local,
            d.incarnation,
            effects,
            Log("warn", "memberlist: Refuting a dead message (from: {src})", (("src", d.from_),)),
        )
    effects.append(Broadcast(d.node, d))
    state = NodeStateType.LEFT if d.node == d.from_ else NodeStateType.DEAD
    member = attrs.evolve(member, incarnation=d.incarnation, state=state, state_change=now)
    effects.append(NotifyLeave(member))
    return Step(member, inc, tuple(effects))


def _expired(member: MemberView | None, local: Local, e: SuspicionExpired, now: float) -> Step:
    if (
        member is None
        or member.state != NodeStateType.SUSPECT
        or member.state_change != e.started_at
    ):
        return Step(member, local.incarnation)
    log = Log(
        "info",
        "memberlist: Marking {node} as failed, suspect timeout reached ({n} peer confirmations)",
        (("node", member.name), ("n", e.confirmations)),
    )
    step = _dead(member, None, local, wire.Dead(member.incarnation, member.name, local.name), now)
    return attrs.evolve(step, effects=(log, *step.effects))
