# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_service -*-
"""Raft message transports: length-prefixed msgpack frames over streams, and an in-memory one.

Frame: 4-byte big-endian length, then one message as encoded by ``wanfedtx.raft.messages``. On the
:8300 port a raft connection starts with type byte 1 (or negotiates ALPN ``consul/raft``); the
``RaftHandler`` registered in the RPC handler registry serves the inbound side, and
``StreamTransport`` dials peers through a ``dial(peer, protocol)`` function (the RPC ``Dialer``,
or a plain TCP connect for tests). Connections are one-way: a server sends on the connection it
dialed and receives on the ones it accepted; replies travel on the replier's own connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.framebudget import FrameBudget
from wanfedtx.framing import LengthPrefixedDecoder, length_prefixed
from wanfedtx.hostport import address_text
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.raft.core import DEFAULT_MAX_ENTRY_BYTES
from wanfedtx.raft.errors import MessageDecodeError
from wanfedtx.raft.messages import Message, decode, encode
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import SourceCheck
from wanfedtx.writenow import write_now

log = Logger(namespace="wanfedtx.raft.transport")

FRAME_OVERHEAD = 64 * 1024  # message fields, per-entry framing, a snapshot's voter list
DEFAULT_PARTIAL_BUDGET = 32 * 1024 * 1024  # bytes of unfinished frames, all connections
DEFAULT_FRAME_TIMEOUT = 10.0  # seconds from a frame's first byte to its last (Consul: 10s)
Receiver = Callable[[Message], None]


def max_frame_for(max_entry_bytes: int, snapshot_chunk_size: int = 256 * 1024) -> int:
    """The largest frame a peer with these limits sends: one maximal entry (or a batch capped
    at that many bytes), or one snapshot chunk, plus the message's own fields."""
    return max(max_entry_bytes, snapshot_chunk_size) + FRAME_OVERHEAD


MAX_FRAME = max_frame_for(DEFAULT_MAX_ENTRY_BYTES)


def frame(msg: Message) -> bytes:
    return length_prefixed(encode(msg))


class FrameBudgetError(MessageDecodeError):
    """The partial frame would take the shared budget of unfinished frames over its limit."""


__all__ = ["FrameBudget"]  # re-exported: raft's budget is the shared primitive


class FrameDecoder(LengthPrefixedDecoder[Message]):
    """Sans-IO: bytes in, messages out (``wanfedtx.framing``). A bad frame sets ``failed`` (a
    MessageDecodeError); the messages before it are still returned, and nothing is decoded
    after it.

    A declared length outside 1..``max_frame`` fails at the header, before its body is buffered.
    With a ``budget``, the bytes of the unfinished frame are reserved in it; a frame the budget
    cannot hold fails with ``FrameBudgetError``. ``close`` releases the reservation."""

    errors = (MessageDecodeError,)

    def __init__(self, max_frame: int = MAX_FRAME, budget: FrameBudget | None = None) -> None:
        super().__init__(max_frame, budget, min_frame=1)

    @property
    def pending(self) -> int:
        """Bytes of the frame being received (0 between frames)."""
        return self.buffered

    def decode(self, body: bytes) -> Message:
        return decode(body)

    def bad_length(self, size: int) -> MessageDecodeError:
        return MessageDecodeError(
            f"raft frame length {size} is outside 1..{self.max_frame}; the peer does "
            "not speak this raft protocol or sends entries over the size limit")

    def over_budget(self, partial: int, budget: FrameBudget) -> MessageDecodeError:
        return FrameBudgetError(
            f"a partial raft frame of {partial} bytes does not fit the budget for "
            f"unfinished frames ({budget.used} of {budget.limit} bytes in use)")


class InboundRaftProtocol(Protocol):
    """The accepted side: decodes frames and hands messages to the receiver.

    With a ``source_check``, every message is checked against the peer's verified identity
    (``peer_node``) before the receiver sees it; the first refused message closes the connection
    and nothing after it is read. With a ``clock``, each frame must arrive whole within
    ``frame_timeout`` seconds of its first byte (later bytes do not extend it)."""

    def __init__(self, receiver: Callable[[], Receiver | None],
                 source_check: SourceCheck | None = None, peer_node: str | None = None,
                 refused: Callable[[str, str], None] | None = None, *,
                 max_frame: int = MAX_FRAME, budget: FrameBudget | None = None,
                 clock: IReactorTime | None = None,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
                 closed: Callable[[str, str, str], None] | None = None) -> None:
        self._receiver = receiver
        self._decoder = FrameDecoder(max_frame, budget)
        self._source_check = source_check
        self._peer_node = peer_node
        self._refused = refused
        self._clock = clock
        self._frame_timeout = frame_timeout
        self._timer: IDelayedCall | None = None
        self._on_closed = closed
        self._closed = False

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        before = self._decoder.completed
        msgs = self._decoder.feed(data)
        recv = self._receiver()
        for m in msgs:
            if self._source_check is not None:
                reason = self._source_check(self._peer_node, m.src)
                if reason is not None:
                    self._refuse(m.src, reason)
                    return
            if recv is not None:
                recv(m)
        failed = self._decoder.failed
        if failed is not None:
            key = "raft-frame-budget" if isinstance(failed, FrameBudgetError) else "raft-frame"
            self._close(key, str(failed))
            return
        if self._closed:
            return
        if self._decoder.pending == 0:
            self._cancel_timer()
        elif self._timer is None or self._decoder.completed != before:
            self._cancel_timer()  # a new frame started in this read: its own deadline
            if self._clock is not None:
                self._timer = self._clock.callLater(self._frame_timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._close("raft-frame-timeout",
                    f"a raft frame was not received whole within {self._frame_timeout:g}s "
                    f"({self._decoder.pending} bytes arrived)")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _close(self, key: str, error: str) -> None:
        self._closed = True
        self._cancel_timer()
        self._decoder.close()
        t: Any = self.transport
        peer = address_text(t.getPeer()) if t is not None else "?"
        if self._on_closed is not None:
            self._on_closed(key, peer, error)
        else:
            log.warn("raft: closing connection from {peer}: {error}", peer=peer, error=error)
        if t is not None:
            t.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._cancel_timer()
        self._decoder.close()

    def _refuse(self, src: str, reason: str) -> None:
        self._closed = True
        self._cancel_timer()
        self._decoder.close()
        t: Any = self.transport
        peer = address_text(t.getPeer()) if t is not None else "?"
        if self._refused is not None:
            self._refused(peer, f"message from {src!r} refused: {reason}")
        if t is not None:
            t.loseConnection()


class RaftHandler:
    """``IRPCHandler`` for the raft type byte / ALPN: feeds inbound messages to a transport.

    ``source_check`` (see ``wanfedtx.rpc.interfaces.SourceCheck``) vets every inbound message
    against the connection's ``peer_node``; refusals are logged (rate-limited, with the peer
    and the reason) and counted in ``raft.rpc.refused``.

    Bounds on every inbound connection: frames over ``max_frame`` bytes are refused at their
    header; unfinished frames of all connections share one ``FrameBudget`` of
    ``partial_budget`` bytes; with a ``clock``, a frame must arrive whole within
    ``frame_timeout`` seconds. Connections closed for these are logged (rate-limited, with
    the peer and the reason) and counted in ``raft.rpc.closed`` by reason."""

    def __init__(self, source_check: SourceCheck | None = None,
                 clock: IReactorTime | None = None, metrics: Registry = REGISTRY, *,
                 max_frame: int = MAX_FRAME, partial_budget: int = DEFAULT_PARTIAL_BUDGET,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> None:
        self.receiver: Receiver | None = None
        self.source_check = source_check
        self.clock = clock
        self.max_frame = max_frame
        self.budget = FrameBudget(partial_budget)
        self.frame_timeout = frame_timeout
        self._refusals = metrics.counter(
            "raft.rpc.refused", "Raft connections closed for a message the peer may not send")
        self._closes = metrics.counter(
            "raft.rpc.closed", "Raft connections closed for a bad, oversized or slow frame",
            ("reason",))
        self._log = RateLimitedLog(log, clock) if clock is not None else None

    def build_protocol(self, conn: Any) -> IProtocol:
        return InboundRaftProtocol(lambda: self.receiver, self.source_check,
                                   getattr(conn, "peer_node", None), self._refused,
                                   max_frame=self.max_frame, budget=self.budget,
                                   clock=self.clock, frame_timeout=self.frame_timeout,
                                   closed=self._closed)

    def stop_logging(self) -> None:
        """Write the pending rate-limit summaries now and cancel their timers (on stop)."""
        if self._log is not None:
            self._log.stop()

    def _closed(self, key: str, peer: str, error: str) -> None:
        self._closes.inc(reason=key)
        fmt = "raft: closing connection: from={peer} operation=\"raft RPC\" error={error}"
        if self._log is not None:
            self._log.warn(key, fmt, peer=peer, error=error)
        else:
            log.warn(fmt, peer=peer, error=error)

    def _refused(self, peer: str, reason: str) -> None:
        self._refusals.inc()
        fmt = "raft: closing connection: from={peer} operation=\"raft RPC\" error={error}"
        if self._log is not None:
            self._log.warn("raft-source", fmt, peer=peer, error=reason)
        else:
            log.warn(fmt, peer=peer, error=reason)


class _Outbound(Protocol):
    def __init__(self, owner: _Peer) -> None:
        self.owner = owner

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.owner.lost(self)


class _Peer:
    """One outbound connection with a bounded queue while (re)connecting."""

    def __init__(self, owner: StreamTransport, addr: str) -> None:
        self.owner = owner
        self.addr = addr
        self.proto: _Outbound | None = None
        self.connecting = False
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.next_try = 0.0

    def send(self, data: bytes) -> None:
        if self.proto is not None and self.proto.transport is not None:
            write_now(self.proto.transport, data)  # a write waits on it: not the next turn
            return
        self.queue.append(data)
        self.queued_bytes += len(data)
        while len(self.queue) > 1 and (len(self.queue) > self.owner.max_queue
                                       or self.queued_bytes > self.owner.max_queue_bytes):
            self.queued_bytes -= len(self.queue.popleft())  # raft retries; keep the newest
        self.connect()

    def connect(self) -> None:
        now = self.owner.clock.seconds()
        if self.connecting or self.owner.stopped or now < self.next_try:
            return
        self.connecting = True
        proto = _Outbound(self)
        d = self.owner.dial(self.addr, proto)

        def ok(_: object) -> None:
            self.connecting = False
            self.proto = proto
            while self.queue and proto.transport is not None:
                proto.transport.write(self.queue.popleft())
            self.queued_bytes = sum(len(q) for q in self.queue)

        def failed(f: Failure) -> None:
            self.connecting = False
            self.next_try = self.owner.clock.seconds() + self.owner.retry_delay
            self.queue.clear()
            self.queued_bytes = 0
            log.debug("raft: cannot reach {peer}: {error}", peer=self.addr,
                      error=f.getErrorMessage())

        d.addCallbacks(ok, failed)

    def lost(self, proto: _Outbound) -> None:
        if self.proto is proto:
            self.proto = None


class StreamTransport:
    """``IRaftTransport`` over stream connections made by ``dial(addr, protocol)``."""

    def __init__(self, clock: IReactorTime, dial: Callable[[str, IProtocol], Deferred[Any]],
                 handler: RaftHandler, max_queue: int = 1024, retry_delay: float = 0.2,
                 max_queue_bytes: int = 64 * 1024 * 1024) -> None:
        self.clock = clock
        self.max_queue_bytes = max_queue_bytes  # per peer, while (re)connecting
        self.dial = dial
        self.handler = handler
        self.max_queue = max_queue
        self.retry_delay = retry_delay
        self.stopped = False
        self._peers: dict[str, _Peer] = {}

    def set_receiver(self, receiver: Receiver) -> None:
        self.handler.receiver = receiver

    def send(self, peer: str, message: Message) -> None:
        p = self._peers.get(peer)
        if p is None:
            p = self._peers[peer] = _Peer(self, peer)
        p.send(frame(message))

    def stop(self) -> Deferred[None]:
        self.stopped = True
        self.handler.receiver = None
        self.handler.stop_logging()
        for p in self._peers.values():
            if p.proto is not None and p.proto.transport is not None:
                p.proto.transport.loseConnection()
        return succeed(None)


class MemoryNetwork:
    """In-memory delivery between ``MemoryTransport``s (next reactor turn, in order)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.transports: dict[str, MemoryTransport] = {}
        self.cut: set[frozenset[str]] = set()  # pairs that cannot talk

    def transport(self, addr: str) -> MemoryTransport:
        t = self.transports[addr] = MemoryTransport(self, addr)
        return t

    def partition(self, a: str, b: str) -> None:
        self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    def deliver(self, src: str, dst: str, raw: bytes) -> None:
        if frozenset((src, dst)) in self.cut:
            return
        t = self.transports.get(dst)
        if t is not None and t.receiver is not None:
            t.receiver(decode(raw))


class MemoryTransport:
    def __init__(self, net: MemoryNetwork, addr: str) -> None:
        self.net = net
        self.addr = addr
        self.receiver: Receiver | None = None

    def set_receiver(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def send(self, peer: str, message: Message) -> None:
        if self.receiver is None:
            return
        self.net.clock.callLater(0, self.net.deliver, self.addr, peer, encode(message))

    def stop(self) -> Deferred[None]:
        self.receiver = None
        return succeed(None)
