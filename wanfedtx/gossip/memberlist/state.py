"""The alive/suspect/dead/refute state machine applied to the member list."""

from __future__ import annotations

from collections.abc import Callable

from .. import wire
from ..errors import GossipError
from ..wire import NodeStateType
from .base import MemberlistBase
from .lifeguard import Suspicion
from .node import Node, NodeInfo, ip_bytes, ip_string, log, suspicion_timeout


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

    def _refute(self, me: Node, accused_inc: int) -> None:
        inc = self._next_incarnation()
        if accused_inc >= inc:
            self.incarnation = accused_inc + 1
            inc = self.incarnation
        me.incarnation = inc
        self.awareness.apply_delta(1)
        a = wire.Alive(inc, me.name, me.addr, me.port, me.meta, self.vsn())
        self._broadcast(me.name, a)

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
        now = self.clock.seconds()
        state = self.node_map.get(a.node)
        updates_node = False
        if state is None:
            state = Node(a.node, a.addr, a.port, state=NodeStateType.DEAD, state_change=now)
            self.node_map[a.node] = state
            self.nodes.append(state)
            # Insert at a random offset so probes stay spread (like Go).
            if len(self.nodes) > 1:
                i = self.rng.randrange(len(self.nodes))
                self.nodes[-1], self.nodes[i] = self.nodes[i], self.nodes[-1]
            self.num_nodes += 1
        elif state.addr != a.addr or state.port != a.port:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and now - state.state_change > reclaim
            if state.state == NodeStateType.LEFT or (
                state.state == NodeStateType.DEAD and can_reclaim
            ):
                log.info(
                    "memberlist: Updating address for left or failed node {node}",
                    node=state.name,
                )
                updates_node = True
            else:
                log.error(
                    "memberlist: Conflicting address for {node}. Mine: {mine} Theirs: {theirs} "
                    "Old state: {old}",
                    node=state.name,
                    mine=f"{state.ip}:{state.port}",
                    theirs=f"{ip_string(a.addr)}:{a.port}",
                    old=state.state.name,
                )
                return
        is_local = a.node == self.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        s = self.suspicions.pop(a.node, None)
        if s is not None:
            s.cancel()
        old_state = state.state
        old_meta = state.meta
        if not bootstrap and is_local:
            if (
                a.incarnation == state.incarnation
                and a.meta == state.meta
                and wire.vsn_tuple(a.vsn) == wire.vsn_tuple(state.vsn)
            ):
                return
            self._refute(state, a.incarnation)
            log.warn("memberlist: Refuting an alive message for '{node}'", node=a.node)
            return
        self._broadcast(a.node, a)
        state.vsn = bytes(a.vsn)
        state.incarnation = a.incarnation
        state.meta = bytes(a.meta)
        state.addr = bytes(a.addr)
        state.port = a.port
        if state.state != NodeStateType.ALIVE:
            state.state = NodeStateType.ALIVE
            state.state_change = now
        if old_state in (NodeStateType.DEAD, NodeStateType.LEFT):
            self.delegate.notify_join(state.snapshot())
        elif old_meta != state.meta:
            self.delegate.notify_update(state.snapshot())

    def _suspect_node(self, s: wire.Suspect) -> None:
        state = self.node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        timer = self.suspicions.get(s.node)
        if timer is not None:
            if timer.confirm(s.from_):
                self._broadcast(s.node, s)
            return
        if state.state != NodeStateType.ALIVE:
            return
        if state.name == self.name:
            self._refute(state, s.incarnation)
            log.warn("memberlist: Refuting a suspect message (from: {src})", src=s.from_)
            return
        self._broadcast(s.node, s)
        state.incarnation = s.incarnation
        state.state = NodeStateType.SUSPECT
        change_time = self.clock.seconds()
        state.state_change = change_time
        k = self.config.suspicion_mult - 2
        n = self.estimate_num_nodes()
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval)
        max_t = self.config.suspicion_max_timeout_mult * min_t

        def fire(confirmations: int) -> None:
            self.suspicions.pop(s.node, None)
            if state.state == NodeStateType.SUSPECT and state.state_change == change_time:
                log.info(
                    "memberlist: Marking {node} as failed, suspect timeout reached "
                    "({n} peer confirmations)",
                    node=state.name,
                    n=confirmations,
                )
                self._dead_node(wire.Dead(state.incarnation, state.name, self.name))

        self.suspicions[s.node] = Suspicion(self.clock, s.from_, k, min_t, max_t, fire)

    def _dead_node(self, d: wire.Dead, on_done: Callable[[], None] | None = None) -> None:
        state = self.node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        s = self.suspicions.pop(d.node, None)
        if s is not None:
            s.cancel()
        if state.dead_or_left():
            return
        if state.name == self.name and not self.leaving:
            self._refute(state, d.incarnation)
            log.warn("memberlist: Refuting a dead message (from: {src})", src=d.from_)
            return
        self._broadcast(d.node, d, on_done)
        state.incarnation = d.incarnation
        state.state = NodeStateType.LEFT if d.node == d.from_ else NodeStateType.DEAD
        state.state_change = self.clock.seconds()
        self.delegate.notify_leave(state.snapshot())
