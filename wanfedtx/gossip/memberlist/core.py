# -*- test-case-name: tests.unit.gossip -*-
"""``Memberlist``: the public API (join, leave, update, user messages) over the mixins."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from .. import wire
from ..errors import GossipError, JoinError
from ..interfaces import Address
from ..wire import NodeStateType
from .base import MemberlistBase
from .node import parse_join_address
from .packets import PacketsMixin
from .probe import ProbeMixin
from .pushpull import PushPullMixin
from .session import _StreamSession
from .state import StateMixin


class Memberlist(ProbeMixin, PacketsMixin, PushPullMixin, StateMixin, MemberlistBase):
    """One memberlist node. Create, ``start()``, ``join([...])``, ``leave()``, ``shutdown()``."""

    # -- public API

    def join(self, existing: Sequence[str]) -> Deferred[int]:
        """Push/pull (join=True) with each address; fire with how many were contacted."""
        results: list[Deferred[bool]] = []
        errors: list[str] = []
        for spec in existing:
            try:
                addr = parse_join_address(spec, self.config.bind_port)
            except (JoinError, ValueError) as exc:
                errors.append(f"Failed to resolve {spec}: {exc}")
                continue
            results.append(self._join_one(addr, spec, errors))
        out: Deferred[int] = Deferred()
        pending = len(results)
        contacted = 0

        def finish() -> None:
            if contacted == 0:
                out.errback(JoinError("; ".join(errors) or "no addresses to join"))
            else:
                out.callback(contacted)

        def done_one(r: bool) -> None:
            nonlocal pending, contacted
            pending -= 1
            contacted += int(r)
            if pending == 0:
                finish()

        if not results:
            finish()
        for d in results:
            d.addCallback(done_one)
        return out

    def _join_one(self, addr: Address, spec: str, errors: list[str]) -> Deferred[bool]:
        result: Deferred[bool] = Deferred()

        def ok(_: None) -> None:
            result.callback(True)

        def failed(f: Failure) -> None:
            errors.append(f"Failed to join {spec}: {f.getErrorMessage()}")
            result.callback(False)

        self.push_pull_node(addr, join=True).addCallbacks(ok, failed)
        return result

    def leave(self, timeout: float = 5.0) -> Deferred[None]:
        """Broadcast our intent to leave (dead about ourselves) and wait until it is sent."""
        if self.leaving:
            return succeed(None)
        self.leaving = True
        me = self.node_map[self.name]
        if me.dead_or_left():
            return succeed(None)
        done: Deferred[None] = Deferred()
        fired = False

        def finished() -> None:
            nonlocal fired
            if not fired:
                fired = True
                if t.active():
                    t.cancel()
                done.callback(None)

        def timed_out() -> None:
            nonlocal fired
            if not fired:
                fired = True
                done.errback(GossipError("timeout waiting for leave broadcast"))

        t = self._call_later(timeout, timed_out)
        any_alive = any(
            n.state != NodeStateType.DEAD and n.name != self.name and not n.dead_or_left()
            for n in self.nodes
        )
        self._dead_node(wire.Dead(me.incarnation, me.name, me.name), on_done=finished)
        if not any_alive:
            finished()
        return done

    def update_node(self) -> None:
        """Re-read our meta from the delegate and broadcast it with a new incarnation."""
        me = self.node_map[self.name]
        meta = self._meta()
        inc = self._next_incarnation()
        a = wire.Alive(inc, self.name, me.addr, me.port, meta, self.vsn())
        self._alive_node(a, bootstrap=True)

    def send_best_effort(self, node: str, msg: bytes) -> None:
        """A user message by UDP (type 8 + raw bytes)."""
        n = self.node_map.get(node)
        if n is None:
            raise GossipError(f"unknown node {node!r}")
        self._raw_send_packet(n.address(), n, bytes((wire.MsgType.USER,)) + msg)

    def send_to_address(self, address: Address, msg: bytes) -> None:
        """A user message by UDP to an address (serf query responses use this)."""
        self._raw_send_packet(address, None, bytes((wire.MsgType.USER,)) + msg)

    def send_reliable(self, node: str, msg: bytes) -> Deferred[None]:
        """A user message over a stream (one-way)."""
        n = self.node_map.get(node)
        if n is None:
            raise GossipError(f"unknown node {node!r}")
        body = wire.UserMsgHeader(user_msg_len=len(msg)).encode() + msg
        d: Deferred[None] = Deferred()

        def cb(_msg: wire.StreamMessage | None, err: str | None) -> None:
            if err:
                d.errback(GossipError(f"failed to send user message to {n.name}: {err}"))
            else:
                d.callback(None)

        self._dial(n.address(), _StreamSession(self, self._wrap_stream(body), cb, False))
        return d
