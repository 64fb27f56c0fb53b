"""Raft message transports: length-prefixed msgpack frames over streams, and an in-memory one.

Frame: 4-byte big-endian length, then one message as encoded by ``wanfedtx.raft.messages``. On the
:8300 port a raft connection starts with type byte 1 (or negotiates ALPN ``consul/raft``); the
``RaftHandler`` registered in the RPC handler registry serves the inbound side, and
``StreamTransport`` dials peers through a ``dial(peer, protocol)`` function (the RPC ``Dialer``,
or a plain TCP connect for tests). Connections are one-way: a server sends on the connection it
dialed and receives on the ones it accepted; replies travel on the replier's own connection.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.raft.errors import MessageDecodeError
from wanfedtx.raft.messages import Message, decode, encode
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import SourceCheck

log = Logger(namespace="wanfedtx.raft.transport")

_LEN = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
Receiver = Callable[[Message], None]


def frame(msg: Message) -> bytes:
    body = encode(msg)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Sans-IO: bytes in, messages out. A bad frame sets ``failed`` (a MessageDecodeError);
    the messages before it are still returned, and nothing is decoded after it."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.failed: MessageDecodeError | None = None

    def feed(self, data: bytes) -> list[Message]:
        if self.failed is not None:
            return []
        self._buf += data
        out = []
        try:
            while len(self._buf) >= 4:
                (n,) = _LEN.unpack_from(self._buf)
                if n == 0 or n > self.max_frame:
                    raise MessageDecodeError(
                        f"raft frame length {n} is outside 1..{self.max_frame}; the peer does "
                        "not speak this raft protocol")
                if len(self._buf) < 4 + n:
                    break
                body = bytes(self._buf[4:4 + n])
                del self._buf[:4 + n]
                out.append(decode(body))
        except MessageDecodeError as e:
            self.failed = e
            self._buf.clear()
        return out


class InboundRaftProtocol(Protocol):
    """The accepted side: decodes frames and hands messages to the receiver.

    With a ``source_check``, every message is checked against the peer's verified identity
    (``peer_node``) before the receiver sees it; the first refused message closes the connection
    and nothing after it is read."""

    def __init__(self, receiver: Callable[[], Receiver | None],
                 source_check: SourceCheck | None = None, peer_node: str | None = None,
                 refused: Callable[[str, str], None] | None = None) -> None:
        self._receiver = receiver
        self._decoder = FrameDecoder()
        self._source_check = source_check
        self._peer_node = peer_node
        self._refused = refused
        self._closed = False

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
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
        if self._decoder.failed is not None and self.transport is not None:
            t: Any = self.transport
            log.warn("raft: closing connection from {peer}: {error}",
                     peer=str(t.getPeer()), error=str(self._decoder.failed))
            self._closed = True
            t.loseConnection()

    def _refuse(self, src: str, reason: str) -> None:
        self._closed = True
        t: Any = self.transport
        peer = str(t.getPeer()) if t is not None else "?"
        if self._refused is not None:
            self._refused(peer, f"message from {src!r} refused: {reason}")
        if t is not None:
            t.loseConnection()


class RaftHandler:
    """``IRPCHandler`` for the raft type byte / ALPN: feeds inbound messages to a transport.

    ``source_check`` (see ``wanfedtx.rpc.interfaces.SourceCheck``) vets every inbound message
    against the connection's ``peer_node``; refusals are logged (rate-limited, with the peer
    and the reason) and counted in ``raft.rpc.refused``."""

    def __init__(self, source_check: SourceCheck | None = None,
                 clock: IReactorTime | None = None, metrics: Registry = REGISTRY) -> None:
        self.receiver: Receiver | None = None
        self.source_check = source_check
        self._refusals = metrics.counter(
            "raft.rpc.refused", "Raft connections closed for a message the peer may not send")
        self._log = RateLimitedLog(log, clock) if clock is not None else None

    def build_protocol(self, conn: Any) -> IProtocol:
        return InboundRaftProtocol(lambda: self.receiver, self.source_check,
                                   getattr(conn, "peer_node", None), self._refused)

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
        self.next_try = 0.0

    def send(self, data: bytes) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.write(data)
            return
        self.queue.append(data)
        while len(self.queue) > self.owner.max_queue:
            self.queue.popleft()  # raft retries; keep only the newest messages
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

        def failed(f: Failure) -> None:
            self.connecting = False
            self.next_try = self.owner.clock.seconds() + self.owner.retry_delay
            self.queue.clear()
            log.debug("raft: cannot reach {peer}: {error}", peer=self.addr,
                      error=f.getErrorMessage())

        d.addCallbacks(ok, failed)

    def lost(self, proto: _Outbound) -> None:
        if self.proto is proto:
            self.proto = None


class StreamTransport:
    """``IRaftTransport`` over stream connections made by ``dial(addr, protocol)``."""

    def __init__(self, clock: IReactorTime, dial: Callable[[str, IProtocol], Deferred[Any]],
                 handler: RaftHandler, max_queue: int = 1024, retry_delay: float = 0.2) -> None:
        self.clock = clock
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
