# -*- test-case-name: tests.unit.gossip -*-
"""Streams: inbound stream dispatch, push/pull state exchange and merge, protocol checks."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred

from .. import wire
from ..errors import GossipError
from ..interfaces import Address, IStreamSink
from ..wire import NodeStateType
from .base import MemberlistBase
from .node import MAX_PUSH_PULL_REQUESTS, NodeInfo, ip_string, log
from .session import _StreamSession, _writer_peer


class PushPullMixin(MemberlistBase):
    # -- streams

    def _new_inbound_stream(self) -> IStreamSink:
        return _StreamSession(self)

    def _handle_inbound_stream(self, msg: wire.StreamMessage, session: _StreamSession) -> None:
        w = session.writer
        if w is None:  # a message is only parsed after connection_made set the writer
            raise GossipError("memberlist: inbound stream message before its connection was made")
        if isinstance(msg, wire.PushPull):
            if self.push_pull_inflight >= MAX_PUSH_PULL_REQUESTS:
                self.peer_log.error(
                    "push-pull-limit",
                    "memberlist: Too many pending push/pull requests from={src}",
                    src=_writer_peer(w),
                )
                w.close()
                return
            w.write(self._wrap_stream(self._local_state(msg.join)))
            w.close()
            self._merge_remote(msg)
            return
        if isinstance(msg, wire.UserMsg):
            w.close()
            if msg.data:
                self.delegate.notify_msg(msg.data)
            return
        if isinstance(msg, wire.Ping):
            if msg.node and msg.node != self.name:
                self.peer_log.warn(
                    "unexpected-node",
                    "memberlist: Got ping for unexpected node {node} from={src}",
                    node=msg.node,
                    src=_writer_peer(w),
                )
                w.close()
                return
            ack = wire.AckResp(msg.seq_no, self.delegate.ack_payload())
            w.write(self._wrap_stream(ack.encode()))
            w.close()
            return
        self.peer_log.error(
            "stream-type",
            "memberlist: Received invalid msgType on a stream: {msg!r} from={src}",
            msg=msg,
            src=_writer_peer(w),
        )
        w.close()

    def _local_state(self, join: bool) -> bytes:
        states = tuple(
            wire.PushNodeState(n.name, n.addr, n.port, n.meta, n.incarnation, int(n.state), n.vsn)
            for n in self.nodes
        )
        user = self.delegate.local_state(join)
        return wire.PushPull(join, states, user).encode()

    def push_pull_node(self, address: Address, join: bool) -> Deferred[None]:
        """Exchange full state with one node over a stream, then merge theirs."""
        d: Deferred[None] = Deferred()
        self.push_pull_inflight += 1

        def cb(msg: wire.StreamMessage | None, err: str | None) -> None:
            self.push_pull_inflight -= 1
            if err is not None or msg is None:
                d.errback(GossipError(err or "no reply"))
                return
            if isinstance(msg, wire.ErrResp):
                d.errback(GossipError(f"remote error: {msg.error}"))
                return
            if not isinstance(msg, wire.PushPull):
                d.errback(
                    GossipError(
                        "received invalid msgType, expected pushPullMsg (6) "
                        f"from {address}: {type(msg).__name__}"
                    )
                )
                return
            try:
                self._merge_remote(msg, raise_errors=True)
            except GossipError as exc:
                d.errback(exc)
                return
            d.callback(None)

        try:
            self._dial(
                address, _StreamSession(self, self._wrap_stream(self._local_state(join)), cb, True)
            )
        except GossipError as exc:
            self.push_pull_inflight -= 1
            return _fail(exc)
        return d

    def _merge_remote(self, msg: wire.PushPull, raise_errors: bool = False) -> None:
        err = self._verify_protocol(msg.nodes)
        if err is None:
            err = self.delegate.notify_merge(
                [
                    NodeInfo(
                        n.name,
                        ip_string(n.addr),
                        n.port,
                        n.meta,
                        n.incarnation,
                        NodeStateType(n.state) if 0 <= n.state <= 3 else NodeStateType.DEAD,
                        n.vsn,
                    )
                    for n in msg.nodes
                ]
            )
        if err is not None:
            log.warn("memberlist: push/pull merge refused: {error}", error=err)
            if raise_errors:
                raise GossipError(err)
            return
        for r in msg.nodes:
            if r.state == NodeStateType.ALIVE:
                self._alive_node(wire.Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn))
            elif r.state == NodeStateType.LEFT:
                self._dead_node(wire.Dead(r.incarnation, r.name, r.name))
            elif r.state in (NodeStateType.DEAD, NodeStateType.SUSPECT):
                self._suspect_node(wire.Suspect(r.incarnation, r.name, self.name))
        if msg.user_state:
            self.delegate.merge_remote_state(msg.user_state, msg.join)

    def _verify_protocol(self, remote: Sequence[wire.PushNodeState]) -> str | None:
        vs: list[tuple[str, tuple[int, ...]]] = [
            (n.name, wire.vsn_tuple(n.vsn)) for n in self.nodes if n.state == NodeStateType.ALIVE
        ]
        vs += [(r.name, wire.vsn_tuple(r.vsn)) for r in remote if r.state == NodeStateType.ALIVE]
        if not vs:
            return None
        pmin = max(v[0] for _, v in vs)
        pmax = min(v[1] for _, v in vs)
        dmin = max(v[3] for _, v in vs)
        dmax = min(v[4] for _, v in vs)
        for name, v in vs:
            if not pmin <= v[2] <= pmax:
                return f"Node '{name}' protocol version ({v[2]}) is incompatible: [{pmin}, {pmax}]"
            if not dmin <= v[5] <= dmax:
                return (
                    f"Node '{name}' delegate protocol version ({v[5]}) is incompatible: "
                    f"[{dmin}, {dmax}]"
                )
        return None


def _fail(exc: Exception) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.errback(exc)
    return d
