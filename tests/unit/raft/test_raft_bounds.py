"""Inbound raft bounds: frame cap at the header, a shared budget for unfinished frames, a per-frame
read deadline that later bytes do not extend; the service logs and counts protocol violations
and refuses oversized entries."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import msgpack
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from wanfedtx.metrics import Registry
from wanfedtx.raft import messages as m
from wanfedtx.raft.core import DEFAULT_MAX_ENTRY_BYTES, RaftOptions
from wanfedtx.raft.errors import EntryTooLargeError
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_PARTIAL_BUDGET,
    MAX_FRAME,
    FrameBudget,
    FrameBudgetError,
    FrameDecoder,
    MemoryNetwork,
    RaftHandler,
    frame,
    max_frame_for,
)

HB = m.AppendEntries("a:1", 3, 9, 2, (), 9, 4)


def connect(handler: RaftHandler, port: int = 40000) -> tuple[Any, StringTransport]:
    proto = handler.build_protocol(object())
    t = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", port))
    proto.makeConnection(t)
    return proto, t


def deadline_connection() -> tuple[Clock, RaftHandler, Any, StringTransport, list[m.Message]]:
    """A handler with a 10 s frame deadline on a fake clock, one connection to it and the list
    of the messages it delivers."""
    clock = Clock()
    h = RaftHandler(clock=clock, metrics=Registry(), frame_timeout=10.0)
    got: list[m.Message] = []
    h.receiver = got.append
    p, t = connect(h)
    return clock, h, p, t, got


class Logs:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Logs:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def closing(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "closing connection" in str(e.get("log_format"))]


def test_defaults() -> None:
    assert DEFAULT_MAX_ENTRY_BYTES == 4 * 1024 * 1024
    assert MAX_FRAME == max_frame_for(DEFAULT_MAX_ENTRY_BYTES) < 64 * 1024 * 1024
    assert max_frame_for(1024) > 256 * 1024  # a snapshot chunk always fits
    assert DEFAULT_PARTIAL_BUDGET == 32 * 1024 * 1024 and DEFAULT_FRAME_TIMEOUT == 10.0


def test_oversized_declared_length_refused_at_the_header() -> None:
    budget = FrameBudget(1 << 20)
    dec = FrameDecoder(max_frame=1000, budget=budget)
    assert dec.feed(struct.pack(">I", 1001)) == []
    assert dec.failed is not None and "outside 1..1000" in str(dec.failed)
    assert dec.pending == 0 and budget.used == 0
    ok = FrameDecoder(max_frame=len(frame(HB)) - 4)
    assert ok.feed(frame(HB)) == [HB]


def test_budget_accounts_partial_frames_and_releases_them() -> None:
    budget = FrameBudget(100)
    a, b = FrameDecoder(budget=budget), FrameDecoder(budget=budget)
    msg = m.AppendEntries("a:1", 3, 9, 2, (m.Entry(10, 3, 0, b"x" * 50),), 9, 4)
    raw = frame(msg)
    assert a.feed(raw[:10]) == [] and budget.used == 10
    assert b.feed(raw[:20]) == [] and budget.used == 30
    assert a.feed(raw[10:]) == [msg] and budget.used == 20  # completed: released
    b.close()
    assert budget.used == 0
    big = struct.pack(">I", 10_000) + b"x" * 60
    assert a.feed(big) == [] and budget.used == 64
    c = FrameDecoder(budget=budget)
    assert c.feed(big) == []
    assert isinstance(c.failed, FrameBudgetError) and budget.used == 64
    assert "budget" in str(c.failed)


def test_connection_over_budget_is_closed_logged_and_counted() -> None:
    reg = Registry()
    clock = Clock()
    h = RaftHandler(clock=clock, metrics=reg, partial_budget=1000)
    p1, t1 = connect(h, 1)
    p2, t2 = connect(h, 2)
    with Logs() as logs:
        p1.dataReceived(struct.pack(">I", 5000) + b"x" * 700)
        p2.dataReceived(struct.pack(">I", 5000) + b"x" * 700)
    assert not t1.disconnecting and t2.disconnecting
    assert h.budget.used == 704
    line = logs.closing()[0]
    assert line["peer"] == "192.0.2.7:2" and "budget" in line["error"]
    assert reg.counter("raft.rpc.closed", "", ("reason",)).value(
        reason="raft-frame-budget") == 1
    p1.connectionLost(None)
    p2.connectionLost(None)
    assert h.budget.used == 0


def test_frame_deadline_starts_at_first_byte_and_is_not_reset() -> None:
    clock, h, p, t, got = deadline_connection()
    raw = frame(HB)
    clock.advance(100)  # idle between frames: no deadline
    assert not t.disconnecting
    with Logs() as logs:
        for i in range(len(raw) - 1):  # trickle one byte a second
            p.dataReceived(raw[i:i + 1])
            clock.advance(1)
            if t.disconnecting:
                break
    assert t.disconnecting and got == []
    assert clock.seconds() - 100 <= 10 + 1
    assert "within 10s" in logs.closing()[0]["error"]
    assert h.budget.used == 0


def test_completed_frames_cancel_the_deadline_and_the_next_frame_gets_its_own() -> None:
    clock, _, p, t, got = deadline_connection()
    raw = frame(HB)
    p.dataReceived(raw[:5])
    clock.advance(9)
    p.dataReceived(raw[5:] + raw[:5])  # first completes, second starts: a fresh 10 s
    clock.advance(9)
    assert not t.disconnecting
    p.dataReceived(raw[5:])
    clock.advance(60)
    assert not t.disconnecting and got == [HB, HB]
    assert not clock.getDelayedCalls()


def test_eight_partial_frames_stay_within_budget() -> None:
    clock = Clock()
    h = RaftHandler(clock=clock, metrics=Registry(), max_frame=8 * 1024 * 1024,
                    partial_budget=16 * 1024 * 1024)
    conns = [connect(h, i) for i in range(8)]
    chunk = b"\0" * 65536
    for _ in range(120):  # 7.5 MiB of a declared 8 MiB frame on each
        for p, t in conns:
            if not t.disconnecting:
                p.dataReceived(chunk if p._decoder.pending else struct.pack(">I", 8 << 20))
            assert h.budget.used <= h.budget.limit
    assert sum(t.disconnecting for _, t in conns) >= 5
    assert h.budget.peak <= h.budget.limit


def test_service_logs_once_and_counts_violations(tmp_path: Path) -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    reg = Registry()
    a = "10.0.0.1:8300"
    s = RaftService(node_id=a, data_dir=str(tmp_path), fsm=_Null(), transport=net.transport(a),
                    reactor=clock, peers=[a, "10.0.0.2:8300", "10.0.0.3:8300"],
                    bootstrap_expect=3, rng=random.Random(1), threaded_writer=False,
                    metrics=reg, options=RaftOptions(max_entry_bytes=100))
    s.startService()
    clock.advance(0.1)
    rcv = net.transports[a].receiver
    assert rcv is not None
    with Logs() as logs:
        for _ in range(5):
            rcv(m.AppendEntries("10.6.6.6:8300", 99, 0, 0, (), 0))
            rcv(m.RequestVote("10.6.6.7:8300", 99, 5, 5))
            clock.advance(0.01)
    refused = [e for e in logs.events if "refused a message" in str(e.get("log_format"))]
    assert [(e["sender"], e["violation"]) for e in refused] == [
        ("10.6.6.6:8300", "not-a-member"), ("10.6.6.7:8300", "not-a-voter")]
    c = reg.counter("raft.protocol_violations", "", ("reason",))
    assert c.value(reason="not-a-member") == 5 and c.value(reason="not-a-voter") == 5
    assert s.core is not None and s.core.term == 1
    assert "consul_raft_protocol_violations" in reg.render()
    s.stopService()


def test_large_entry_warned_and_oversized_refused(tmp_path: Path) -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    a = "10.0.0.1:8300"
    s = RaftService(node_id=a, data_dir=str(tmp_path), fsm=_Null(), transport=net.transport(a),
                    reactor=clock, peers=[a], bootstrap_expect=1, rng=random.Random(1),
                    threaded_writer=False, metrics=Registry(),
                    options=RaftOptions(max_entry_bytes=3 * 1024 * 1024))
    s.startService()
    for _ in range(100):
        clock.advance(0.1)
        if s.is_leader():
            break
    assert s.is_leader()
    out: list[Any] = []
    with Logs() as logs:
        s.apply(b"x" * (2 * 1024 * 1024)).addBoth(out.append)
        s.apply(b"x" * (3 * 1024 * 1024 + 1)).addBoth(out.append)
        clock.advance(0.1)
    assert any("Attempting to apply large raft entry" in str(e.get("log_format"))
               and e["size"] == 2 * 1024 * 1024 for e in logs.events)
    errs = [o for o in out if not isinstance(o, tuple)]
    assert len(errs) == 1 and errs[0].check(EntryTooLargeError)
    errs[0].trap(EntryTooLargeError)
    s.stopService()


class _Null:
    def apply(self, index: int, data: bytes) -> Any:
        return None

    def snapshot(self) -> Any:
        yield msgpack.packb({})

    def restore(self, chunks: Any, last_index: int = 0) -> None:
        pass


def test_outbound_queue_to_an_unreachable_peer_is_bounded_by_bytes() -> None:
    from twisted.internet.defer import Deferred

    from wanfedtx.raft.transport import StreamTransport

    pending: list[Deferred[Any]] = []

    def dial(addr: str, proto: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        return d

    st = StreamTransport(Clock(), dial, RaftHandler(), max_queue_bytes=10_000)
    big = m.AppendEntries("a:1", 3, 9, 2, (m.Entry(10, 3, 0, b"x" * 3000),), 9)
    for _ in range(20):
        st.send("b:2", big)
    peer = st._peers["b:2"]
    assert peer.queued_bytes <= 10_000 and len(peer.queue) == 3
    assert len(pending) == 1


def test_stopping_the_transport_writes_pending_summaries_and_leaves_no_timer() -> None:
    from twisted.internet.task import Clock

    from wanfedtx.raft.transport import RaftHandler, StreamTransport

    clock = Clock()
    handler = RaftHandler(clock=clock)
    for i in range(20):  # past the burst: a summary timer is pending
        handler._closed("raft-frame", f"127.0.0.1:{i}", "bad frame")
    assert clock.getDelayedCalls()
    StreamTransport(clock, lambda addr, proto: None, handler).stop()  # type: ignore[arg-type,return-value]
    assert clock.getDelayedCalls() == []
