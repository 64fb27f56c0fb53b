# -*- test-case-name: tests.unit.gossip -*-
"""Applies the pure transitions of ``nodestate`` to the member list: timers, delegate, logs.

``_alive_node``/``_suspect_node``/``_dead_node`` keep their memberlist names; each looks the member
up, asks ``nodestate.transition`` what to do and carries the effects out (the broadcast queue, the
suspicion timers, the delegate's notifications, log lines).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import wire
from ..errors import GossipError
from ..wire import NodeStateType
from .base import MemberlistBase
from .lifeguard import Suspicion
from .node import Node, NodeInfo, ip_bytes, ip_string, log, suspicion_timeout
from .nodestate import (
    Broadcast,
    CancelSuspicion,
    ConfirmSuspicion,
    Effect,
    Local,
    LocalAlive,
    MemberView,
    Message,
    NotifyJoin,
    NotifyLeave,
    NotifyUpdate,
    Refuted,
    StartSuspicion,
    SuspicionExpired,
    SuspicionView,
    before_update,
    transition,
)


def _view(n: Node) -> MemberView:
    return MemberView(n.name, n.addr, n.port, n.meta, n.incarnation, n.state, n.state_change, n.vsn)


def _info(m: MemberView) -> NodeInfo:
    return NodeInfo(m.name, ip_string(m.addr), m.port, m.meta, m.incarnation, m.state, m.vsn)


class StateMixin(MemberlistBase):
    # -- state machine

    def _meta(self) -> bytes:
        meta = self.delegate.node_meta(wire.META_MAX_SIZE)
        if len(meta) > wire.META_MAX_SIZE:
            raise GossipError("Node meta data provided is longer than the limit")
        return meta

    def _set_alive(self) -> None:
        a = wire.Alive(
            self._next_incarnation(),
            self.name,
            ip_bytes(self.advertise_ip),
            self.advertise_port,
            self._meta(),
            self.vsn(),
        )
        self._alive_node(a, bootstrap=True)

    def _alive_node(self, a: wire.Alive, bootstrap: bool = False) -> None:
        if self.leaving and a.node == self.name:
            return
        v = wire.vsn_tuple(a.vsn)
        if len(a.vsn) >= 3 and (v[0] == 0 or v[1] == 0 or v[0] > v[1]):
            log.warn(
                "memberlist: Ignoring an alive message for '{node}' because protocol version(s) "
                "are wrong: {pmin} <= {pcur} <= {pmax} should be >0",
                node=a.node,
                pmin=v[0],
                pcur=v[2],
                pmax=v[1],
            )
            return
        err = self.delegate.notify_alive(
            NodeInfo(
                a.node, ip_string(a.addr), a.port, a.meta, a.incarnation, NodeStateType.ALIVE, a.vsn
            )
        )
        if err is not None:
            log.warn(
                "memberlist: ignoring alive message for '{node}': {error}", node=a.node, error=err
            )
            return
        self._apply(a.node, LocalAlive(a) if bootstrap else a)

    def _suspect_node(self, s: wire.Suspect) -> None:
        self._apply(s.node, s)

    def _dead_node(self, d: wire.Dead, on_done: Callable[[], None] | None = None) -> None:
        self._apply(d.node, d, on_done)

    def _local(self) -> Local:
        # Rebuilt only when what it holds changes: one is read for every alive of a push/pull.
        loc = self._local_view
        if (
            loc is None
            or loc.incarnation != self.incarnation
            or loc.leaving != self.leaving
            or loc.dead_node_reclaim_time != self.config.dead_node_reclaim_time
        ):
            loc = Local(
                self.name,
                self.incarnation,
                self.vsn(),
                self.leaving,
                self.config.dead_node_reclaim_time,
            )
            self._local_view = loc
        return loc

    def _apply(self, name: str, msg: Message, on_done: Callable[[], None] | None = None) -> None:
        """Run one transition for member ``name`` and carry out its effects."""
        node = self.node_map.get(name)
        timer = self.suspicions.get(name)
        suspicion = None
        if timer is not None:
            suspicion = SuspicionView(timer.k, frozenset(timer.confirmations))
        now = self.clock.seconds()
        view = None if node is None else _view(node)
        step = transition(view, suspicion, self._local(), msg, now)
        for e in step.effects:
            if before_update(e):
                self._effect(e, on_done)
        m = step.member
        if m is not None and m is not view:  # unchanged (a stale message): nothing to write
            if node is None:
                node = Node(m.name, m.addr, m.port, state=m.state, state_change=m.state_change)
                self.node_map[m.name] = node
                self.nodes.append(node)
                # Insert at a random offset so probes stay spread (like Go).
                if len(self.nodes) > 1:
                    i = self.rng.randrange(len(self.nodes))
                    self.nodes[-1], self.nodes[i] = self.nodes[i], self.nodes[-1]
                self.num_nodes += 1
            node.addr, node.port, node.meta, node.vsn = m.addr, m.port, m.meta, m.vsn
            node.incarnation, node.state, node.state_change = m.incarnation, m.state, m.state_change
        for e in step.effects:
            if not before_update(e):
                self._effect(e, on_done)

    def _effect(self, e: Effect, on_done: Callable[[], None] | None) -> None:
        if isinstance(e, Broadcast):
            # Only the dead broadcast of a leave waits for its transmission (``on_done``).
            done = on_done if isinstance(e.msg, wire.Dead) else None
            self._broadcast(e.node, e.msg, done)
        elif isinstance(e, Refuted):
            self.incarnation = e.incarnation
            self.awareness.apply_delta(1)
        elif isinstance(e, CancelSuspicion):
            s = self.suspicions.pop(e.node, None)
            if s is not None:
                s.cancel()
        elif isinstance(e, ConfirmSuspicion):
            timer = self.suspicions.get(e.node)
            if timer is not None:
                timer.confirm(e.from_)
        elif isinstance(e, StartSuspicion):
            self._start_suspicion(e)
        elif isinstance(e, NotifyJoin):
            self.delegate.notify_join(_info(e.member))
        elif isinstance(e, NotifyUpdate):
            self.delegate.notify_update(_info(e.member))
        elif isinstance(e, NotifyLeave):
            self.delegate.notify_leave(_info(e.member))
        else:
            getattr(log, e.level)(e.fmt, **dict(e.fields))

    def _start_suspicion(self, e: StartSuspicion) -> None:
        k = self.config.suspicion_mult - 2
        n = self.estimate_num_nodes()
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval)
        max_t = self.config.suspicion_max_timeout_mult * min_t

        def fire(confirmations: int) -> None:
            self.suspicions.pop(e.node, None)
            self._apply(e.node, SuspicionExpired(e.node, e.started_at, confirmations))

        self.suspicions[e.node] = Suspicion(self.clock, e.from_, k, min_t, max_t, fire)
