# -*- test-case-name: tests.unit.gossip -*-
"""``Serf``: lifecycle and the memberlist delegate over the intent and query mixins."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ..errors import GossipError, WireError
from ..memberlist import (
    NodeInfo,
)
from .base import SerfBase, log
from .events import Member
from .intents import IntentsMixin
from .messages import (
    JoinIntent,
    LeaveIntent,
    MemberStatus,
    MsgType,
    PushPullState,
    QueryMsg,
    QueryResponseMsg,
    UserEventMsg,
    decode_tags,
    encode_tags,
)
from .queries import QueriesMixin


class Serf(IntentsMixin, QueriesMixin, SerfBase):
    """One serf node (owns its memberlist)."""

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
        me = self.members.get(self.name)
        if self.leaving and me is not None and me.status == MemberStatus.LEAVING:
            # While leaving, name ourselves among the left members (with our leave intent's
            # Lamport time in StatusLTimes): a peer that merges this state applies the intent
            # (serf's MergeRemoteState), so it sees us as left even if the gossiped intent
            # never reached it, or reached it after its failure detector gave up on us.
            left.append(self.name)
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
            # One past the status time, as serf's MergeRemoteState: the leave was accepted after
            # that time. A peer that had the member *leaving* sent that same time as a plain
            # status time, which merges as a join intent; without the + 1 the leave carried by
            # a later push/pull would look no newer, and a member that memberlist meanwhile saw
            # go (failed: the gossiped intent came too late) would stay failed for good.
            lt = pp.status_ltimes.get(name, 0) + 1
            self._handle_leave_intent(LeaveIntent(lt, name, False))
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
