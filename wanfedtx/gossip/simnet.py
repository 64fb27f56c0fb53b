# -*- test-case-name: tests.unit.gossip.test_gossip_memberlist -*-
"""An in-memory network of ``IGossipTransport``s driven by an ``IReactorTime`` (``task.Clock``).

Used by unit tests and the simulation benchmark to run many memberlist/serf nodes in one process
with deterministic time: packets and stream bytes are delivered after a configurable latency;
nodes can be stopped (crash: silently drop everything) or made slow; counters record traffic.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime
from zope.interface import implementer

from wanfedtx.hostport import split_host_port

from .interfaces import Address, IGossipTransport, IStreamSink, IStreamWriter, PacketHandler


class SimNetwork:
    """Routes packets and streams between ``SimTransport``s by ``host:port``."""

    def __init__(
        self, clock: IReactorTime, latency: float = 0.001, rng: random.Random | None = None
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.rng = rng or random.Random(0)
        self.transports: dict[str, SimTransport] = {}
        self.packet_loss = 0.0
        self.packets = 0
        self.bytes = 0
        self.streams = 0

    def transport(self, host: str, port: int) -> SimTransport:
        t = SimTransport(self, host, port)
        self.transports[f"{host}:{port}"] = t
        return t

    def _latency_for(self, t: SimTransport) -> float:
        return self.latency + t.extra_latency

    def deliver_packet(self, src: SimTransport, packet: bytes, address: Address) -> None:
        self.packets += 1
        self.bytes += len(packet)
        dst = self.transports.get(address.addr)
        if dst is None or not dst.up or not src.up:
            return
        if self.packet_loss and self.rng.random() < self.packet_loss:
            return
        delay = self._latency_for(src) + self._latency_for(dst)
        self.clock.callLater(
            delay, dst.ingest_packet, packet, (src.host, src.port), self.clock.seconds() + delay
        )

    def open_stream(self, src: SimTransport, address: Address, sink: IStreamSink) -> None:
        self.streams += 1
        dst = self.transports.get(address.addr)
        delay = self._latency_for(src) + (self._latency_for(dst) if dst else 0.0)
        if dst is None or not dst.up or not src.up or dst.stream_handler is None:
            self.clock.callLater(delay, sink.connection_lost, "connection refused")
            return
        server_sink = dst.stream_handler()
        a = _Pipe(self, delay, src, dst)
        b = _Pipe(self, delay, dst, src)
        a.peer_sink, b.peer_sink = server_sink, sink
        a.own_sink, b.own_sink = sink, server_sink

        def up() -> None:
            server_sink.connection_made(b)
            sink.connection_made(a)

        self.clock.callLater(delay, up)


@implementer(IStreamWriter)
class _Pipe:
    """One direction of an in-memory stream: writes arrive at ``peer_sink`` after ``delay``."""

    def __init__(self, net: SimNetwork, delay: float, src: SimTransport, dst: SimTransport) -> None:
        self.net = net
        self.delay = delay
        self.src = src
        self.dst = dst
        self.peer_sink: IStreamSink | None = None
        self.own_sink: IStreamSink | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed or not self.src.up:
            return
        self.net.bytes += len(data)
        peer = self.peer_sink

        def arrive() -> None:
            if peer is not None and self.dst.up:
                peer.data_received(data)

        self.net.clock.callLater(self.delay, arrive)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sink, delay in ((self.peer_sink, self.delay), (self.own_sink, 0.0)):
            if sink is not None:
                self.net.clock.callLater(delay, sink.connection_lost, None)


@implementer(IGossipTransport)
class SimTransport:
    """A node's attachment to a ``SimNetwork``."""

    def __init__(self, net: SimNetwork, host: str, port: int) -> None:
        self.net = net
        self.host = host
        self.port = port
        self.up = True
        self.extra_latency = 0.0
        self.packet_handler: PacketHandler | None = None
        self.stream_handler: Callable[[], IStreamSink] | None = None

    def set_handlers(
        self, packet_handler: PacketHandler, stream_handler: Callable[[], IStreamSink]
    ) -> None:
        self.packet_handler = packet_handler
        self.stream_handler = stream_handler

    def final_advertise_addr(self, ip: str, port: int) -> tuple[str, int]:
        return self.host, self.port

    def write_to_address(self, packet: bytes, address: Address) -> float:
        split_host_port(address.addr)
        self.net.deliver_packet(self, packet, address)
        return self.net.clock.seconds()

    def dial_address(self, address: Address, sink: IStreamSink, timeout: float) -> None:
        self.net.open_stream(self, address, sink)

    def ingest_packet(self, packet: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        if self.up and self.packet_handler is not None:
            self.packet_handler(packet, from_addr, timestamp)

    def ingest_stream(self) -> IProtocol:
        raise NotImplementedError("SimTransport has no byte-level stream ingestion")

    def shutdown(self) -> Deferred[None]:
        self.up = False
        return succeed(None)


def run_for(clock: Any, seconds: float, step: float = 0.01) -> None:
    """Advance a ``task.Clock`` by ``seconds`` in ``step`` increments (fires timers in order)."""
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        clock.advance(min(step, end - clock.seconds()))


@implementer(IDelayedCall)
class _HeapCall:
    """A timer handle; the heap holds ``(time, seq, handle)`` and only the entry whose ``seq``
    matches the handle's current one is live (reset pushes a new entry)."""

    def __init__(self, clock: HeapClock, fn: Callable[..., Any], args: Any, kw: Any) -> None:
        self.clock = clock
        self.time = 0.0
        self.seq = 0
        self.fn, self.args, self.kw = fn, args, kw
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        from twisted.internet.error import AlreadyCalled, AlreadyCancelled

        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()
        self.cancelled = True

    def delay(self, secondsLater: float) -> None:
        self.reset(self.time + secondsLater - self.clock.seconds())

    def reset(self, secondsFromNow: float) -> None:
        if not self.active():
            raise ValueError("cannot reset an inactive call")
        self.clock._schedule(self, secondsFromNow)

    def active(self) -> bool:
        return not (self.cancelled or self.called)


@implementer(IReactorTime)
class HeapClock:
    """A deterministic ``IReactorTime`` like ``task.Clock`` but with a heap (O(log n) per timer),
    for simulations with thousands of pending timers."""

    def __init__(self) -> None:
        self._now = 0.0
        self._heap: list[tuple[float, int, _HeapCall]] = []
        self._seq = 0

    def seconds(self) -> float:
        return self._now

    def _schedule(self, call: _HeapCall, delay: float) -> None:
        self._seq += 1
        call.seq = self._seq
        call.time = self._now + max(delay, 0.0)
        heapq.heappush(self._heap, (call.time, call.seq, call))

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        call = _HeapCall(self, callable, args, kw)
        self._schedule(call, delay)
        return call

    def getDelayedCalls(self) -> list[_HeapCall]:
        return [c for _t, seq, c in self._heap if c.active() and c.seq == seq]

    def advance(self, amount: float) -> None:
        end = self._now + amount
        heap = self._heap
        while heap and heap[0][0] <= end:
            when, seq, call = heapq.heappop(heap)
            if seq != call.seq or not call.active():
                continue
            self._now = max(self._now, when)
            call.called = True
            call.fn(*call.args, **call.kw)
        self._now = end
