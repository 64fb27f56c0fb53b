"""Packet framing (4-byte big-endian length + payload) and the receiver's frame loop.

Hypothesis example count: ``WANFED_FUZZ_EXAMPLES`` (default 200 per test).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from wanfed_fakes import FakeInner, captured_logs

from wanfedtx.wanfed.constants import GOSSIP_PACKET_MAX_BYTE_SIZE, GOSSIP_PACKET_MAX_IDLE_TIME
from wanfedtx.wanfed.errors import FrameError, FrameTooLarge
from wanfedtx.wanfed.framing import FrameDecoder, encode_frame
from wanfedtx.wanfed.ingest import MSG_FAILED_TO_INGEST, PacketIngestProtocol


def _ingest_failure(event: dict[str, Any]) -> bool:
    return str(event.get("log_format", "")).startswith(MSG_FAILED_TO_INGEST)

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_constants_match_the_reference() -> None:
    assert GOSSIP_PACKET_MAX_BYTE_SIZE == 4 * 1024 * 1024
    assert GOSSIP_PACKET_MAX_IDLE_TIME == 120.0


def test_read_uint32_values_round_trip() -> None:
    # TestRPC_readUint32: 42, MaxUint32 and 1 read back (as headers, with a limit that allows it)
    d = FrameDecoder(limit=0xFFFFFFFF)
    assert d.feed(struct.pack(">I", 42) + b"x" * 42) == [b"x" * 42]
    d.feed(struct.pack(">I", 0xFFFFFFFF))
    assert not d.awaiting_header  # the header was accepted; a body of 4 GiB would follow
    d2 = FrameDecoder()
    assert d2.feed(encode_frame(b"a")) == [b"a"]


def test_frames_split_anywhere_and_concatenated() -> None:
    payloads = [b"", b"one", b"\x00" * 1000, b"last"]
    stream = b"".join(encode_frame(p) for p in payloads)
    assert stream[:4] == b"\x00\x00\x00\x00" and stream[4:8] == b"\x00\x00\x00\x03"
    for step in (1, 2, 3, 5, 7, len(stream)):
        d = FrameDecoder()
        got: list[bytes] = []
        for i in range(0, len(stream), step):
            got += d.feed(stream[i : i + step])
        assert got == payloads
        assert d.awaiting_header and d.buffered == 0


def test_oversize_header_is_refused_at_once_with_the_reference_message() -> None:
    d = FrameDecoder()
    assert d.feed(struct.pack(">I", GOSSIP_PACKET_MAX_BYTE_SIZE + 1)) == []
    assert isinstance(d.failed, FrameTooLarge)
    assert str(d.failed) == "gossip packet size 4194305 exceeds threshold of 4194304"
    assert d.feed(encode_frame(b"more")) == []  # nothing after a bad frame
    assert FrameDecoder().feed(struct.pack(">I", GOSSIP_PACKET_MAX_BYTE_SIZE)) == []
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, limit=10)


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(1, 64), min_size=1))
def test_fuzz_round_trip_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    d = FrameDecoder()
    got: list[bytes] = []
    i = k = 0
    while i < len(stream):
        n = cuts[k % len(cuts)]
        got += d.feed(stream[i : i + n])
        i += n
        k += 1
    assert got == payloads


@FUZZ
@given(st.binary(max_size=2000), st.integers(1, 4096))
def test_fuzz_decoder_random_bytes_frames_or_frame_error(data: bytes, limit: int) -> None:
    d = FrameDecoder(limit=limit)
    frames = d.feed(data)
    assert all(len(f) <= limit for f in frames)
    if d.failed is not None:
        assert isinstance(d.failed, FrameError)
        return
    assert sum(4 + len(f) for f in frames) + d.buffered == len(data)
    assert d.awaiting_header == (d.buffered < 4)


# -- the receiving loop (PacketIngestProtocol) over a StringTransport ------------------------


def receiver(limit: int = GOSSIP_PACKET_MAX_BYTE_SIZE,
             running: bool = True) -> tuple[PacketIngestProtocol, StringTransport, FakeInner,
                                            Clock]:
    clock = Clock()
    clock.advance(1000)
    inner = FakeInner()
    p = PacketIngestProtocol(lambda: inner if running else None, clock, max_size=limit)
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.9", 4431))
    p.makeConnection(t)
    return p, t, inner, clock


def test_receiver_ingests_exactly_length_bytes_with_the_gateway_as_source() -> None:
    p, t, inner, _clock = receiver()
    p.dataReceived(encode_frame(b"\x08hello") + encode_frame(b"\x08two")[:3])
    assert inner.ingested == [(b"\x08hello", ("127.0.0.9", 4431), 1000.0)]
    p.dataReceived(encode_frame(b"\x08two")[3:])
    assert [x[0] for x in inner.ingested] == [b"\x08hello", b"\x08two"]
    assert not t.disconnecting


def test_receiver_idle_two_minutes_waiting_for_a_header_is_closed() -> None:
    p, t, _inner, clock = receiver()
    with captured_logs() as logs:
        clock.advance(119)
        p.dataReceived(b"\x00\x00")  # half a header does not extend the deadline
        clock.advance(0.9)
        assert not t.disconnecting
        clock.advance(0.2)
    assert t.disconnecting
    assert any(_ingest_failure(e) for e in logs)
    assert "i/o timeout" in next(e["error"] for e in logs if "error" in e)


def test_receiver_deadline_restarts_after_each_frame_and_not_during_a_body() -> None:
    p, t, inner, clock = receiver()
    clock.advance(100)
    p.dataReceived(encode_frame(b"\x08a"))  # a frame completes: new 2 min wait
    clock.advance(100)
    assert not t.disconnecting
    p.dataReceived(struct.pack(">I", 10) + b"12")  # header read, body pending: no deadline
    clock.advance(1000)
    assert not t.disconnecting
    p.dataReceived(b"34567890")
    assert inner.ingested[-1][0] == b"1234567890"
    clock.advance(GOSSIP_PACKET_MAX_IDLE_TIME)
    assert t.disconnecting


@pytest.mark.parametrize("bad,error", [
    (struct.pack(">I", GOSSIP_PACKET_MAX_BYTE_SIZE + 1),
     "gossip packet size 4194305 exceeds threshold of 4194304"),
    (encode_frame(b""), "packet too short (0 bytes) 127.0.0.9:4431"),
])
def test_bad_frame_closes_with_log_line(bad: bytes, error: str) -> None:
    p, t, inner, _clock = receiver()
    with captured_logs() as logs:
        p.dataReceived(encode_frame(b"\x08ok") + bad + encode_frame(b"\x08after"))
    assert [x[0] for x in inner.ingested] == [b"\x08ok"]
    assert t.disconnecting
    (ev,) = [e for e in logs if _ingest_failure(e)]
    assert ev["error"] == error
    p.dataReceived(encode_frame(b"\x08ignored"))
    assert len(inner.ingested) == 1


def test_receiver_returns_quietly_while_the_pool_is_not_running() -> None:
    p, t, inner, _ = receiver(running=False)
    with captured_logs() as logs:
        p.dataReceived(encode_frame(b"\x08x"))
    assert t.disconnecting and inner.ingested == []
    assert not any(_ingest_failure(e) for e in logs)


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 50))
def test_fuzz_receiver_bad_input_closes_with_log_never_crashes(data: bytes, step: int) -> None:
    p, t, inner, clock = receiver(limit=256)
    with captured_logs() as logs:
        for i in range(0, len(data), step):
            p.dataReceived(data[i : i + step])
        clock.advance(GOSSIP_PACKET_MAX_IDLE_TIME + 1)
    failures: list[Any] = [e for e in logs if "log_failure" in e]
    assert failures == []
    # Always closed in the end (bad frame, empty frame or idle), and every close was logged.
    assert t.disconnecting
    assert any(_ingest_failure(e) for e in logs)
    assert all(0 < len(x[0]) <= 256 for x in inner.ingested)


def test_many_bad_peers_write_a_bounded_number_of_lines() -> None:
    from wanfedtx.ratelog import DEFAULT_BURST, DEFAULT_INTERVAL
    from wanfedtx.wanfed.ingest import PacketHandler

    clock = Clock()
    inner = FakeInner()
    handler = PacketHandler(lambda: inner, clock)
    with captured_logs() as logs:
        for i in range(500):
            p = handler.build_protocol(None)  # type: ignore[arg-type]
            t = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.3", 2000 + i))
            p.makeConnection(t)
            p.dataReceived(struct.pack(">I", GOSSIP_PACKET_MAX_BYTE_SIZE + 1))
            assert t.disconnecting
        lines = [e for e in logs if _ingest_failure(e)]
        assert len(lines) == DEFAULT_BURST
        assert lines[0]["conn"] == "192.0.2.3:2000" and lines[0]["reason"] == "bad-frame"
        clock.advance(DEFAULT_INTERVAL)
    summary = [e for e in logs if e.get("count")]
    assert [(e["reason"], e["count"]) for e in summary] == [("bad-frame", 500 - DEFAULT_BURST)]


def test_the_ingest_failure_line_says_which_connection_and_why() -> None:
    p, _t, _inner, _ = receiver(limit=256)
    with captured_logs() as logs:
        p.dataReceived(struct.pack(">I", 300))
    (ev,) = [e for e in logs if _ingest_failure(e)]
    text = formatEvent(ev)
    assert text.startswith("failed to ingest RPC: protocol=consul/wan-gossip/packet error=")
    assert "300" in text and text.endswith(f"conn={ev['conn']}") and ev["conn"]
