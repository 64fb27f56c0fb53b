# -*- test-case-name: tests.unit.gossip -*-
"""serf membership: join and leave intents, memberlist notifications, reconnect and reaping."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.hostport import format_host

from ..errors import GossipError, WireError
from ..memberlist import (
    NodeInfo,
    NodeStateType,
)
from .base import SerfBase, log
from .events import Member, MemberEvent
from .messages import JoinIntent, LeaveIntent, MemberStatus, MsgType, decode_tags

LEAVE_HANDOFF_PEERS = 3  # members told of our leave over TCP before we stop


# serf's log line for each member event (Consul's agents print these at INFO).
_EVENT_LINES = {
    "member-join": "serf: EventMemberJoin: {name} {addr}",
    "member-leave": "serf: EventMemberLeave: {name} {addr}",
    "member-failed": "serf: EventMemberFailed: {name} {addr}",
    "member-update": "serf: EventMemberUpdate: {name}",
    "member-reap": "serf: EventMemberReap: {name}",
}
_FORCED_LINES = {
    "member-leave": "serf: EventMemberLeave (forced): {name} {addr}",
    "member-reap": "serf: EventMemberReap (forced): {name} {addr}",
}


class IntentsMixin(SerfBase):
    def _member_event(self, kind: str, m: Member, *, forced: bool = False) -> None:
        """Log serf's line for the event, then hand a snapshot of the member to ``on_event``."""
        line = (_FORCED_LINES if forced else _EVENT_LINES)[kind]
        log.info(line, name=m.name, addr=m.addr)
        self.on_event(MemberEvent(kind, (attrs.evolve(m),)))

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
        alone = self.memberlist.num_alive() <= 1
        if not alone:
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
        if not alone:
            await self._hand_off_leave()
        # Stay up a little so others learn we left (nobody to tell when we were alone).
        if self.config.leave_propagate_delay > 0 and not alone:
            await task.deferLater(self.clock, self.config.leave_propagate_delay, lambda: None)

    async def _hand_off_leave(self) -> None:
        """Tell up to ``LEAVE_HANDOFF_PEERS`` alive members over TCP that we leave.

        The leave intent and memberlist's own dead message travel by UDP gossip, a few peers per
        interval; on a busy host or a lossy link a peer can miss both and later declare us
        failed. A push/pull carries both in one reliable exchange: memberlist's state shows us
        left, and serf's names us among the left members with our intent's Lamport time (see
        ``local_state``). Best effort: failures are logged at debug, the whole hand-off is
        bounded by ``broadcast_timeout``."""
        ml = self.memberlist
        peers = ml._k_random_nodes(
            LEAVE_HANDOFF_PEERS,
            lambda n: n.name == self.name or n.state != NodeStateType.ALIVE)
        if not peers:
            return
        finished: Deferred[None] = Deferred()
        pending = len(peers)

        def one_done(result: object) -> None:
            nonlocal pending
            if isinstance(result, Failure):
                log.debug("serf: leave hand-off failed: {error}", error=result.getErrorMessage())
            pending -= 1
            if pending == 0 and not finished.called:
                finished.callback(None)

        for p in peers:
            ml.push_pull_node(p.address(), join=False).addBoth(one_done)
        timer = self.clock.callLater(
            self.config.broadcast_timeout,
            lambda: None if finished.called else finished.callback(None))
        await finished
        if timer.active():
            timer.cancel()

    def force_leave(self, node: str, prune: bool = False) -> bool:
        """serf ``RemoveFailedNode``: broadcast a leave intent for ``node`` so a failed member
        becomes left (an alive one refutes it); ``prune`` also forgets a left member. False when
        the node is unknown."""
        if node not in self.members:
            return False
        ltime = self.member_clock.time()
        self.member_clock.increment()
        msg = LeaveIntent(ltime, node, prune)
        if self._handle_leave_intent(msg):
            self.broadcasts.queue(msg.encode(), name=None)
        return True

    def _prune(self, node: str) -> None:
        m = self.members.get(node)
        if m is not None and m.status == MemberStatus.LEFT and node != self.name:
            del self.members[node]
            self._member_event("member-reap", m, forced=True)

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
        self._member_event("member-join", m)

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
        self._member_event(kind, m)

    def notify_update(self, node: NodeInfo) -> None:
        m = self.members.get(node.name)
        if m is None:
            return
        try:
            m.tags = decode_tags(node.meta)
        except WireError:
            return
        m.addr, m.port, m.vsn = node.addr, node.port, node.vsn
        self._member_event("member-update", m)

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
            self._member_event("member-leave", m, forced=True)
            if msg.prune:
                self._prune(msg.node)
            return True
        if msg.prune and m.status == MemberStatus.LEFT:
            m.status_ltime = msg.ltime
            self._prune(msg.node)
            return True
        return False

    def _recent_intent(self, node: str, typ: int, ltime: int) -> bool:
        cur = self.recent_intents.get(node)
        if cur is not None and cur[1] >= ltime:
            return False
        self.recent_intents[node] = (typ, ltime, self.clock.seconds())
        return True

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
                self._member_event("member-reap", m)
        for node, (_t, _lt, at) in list(self.recent_intents.items()):
            if now - at > self.config.recent_intent_timeout:
                del self.recent_intents[node]
        self._reap_call = self.clock.callLater(self.config.reap_interval, self._reap_tick)
