"""Raft frames on a stream: split and merged delivery, bad frames close the connection."""

from __future__ import annotations

import os
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from wanfedtx.raft import messages as m
from wanfedtx.raft.errors import MessageDecodeError
from wanfedtx.raft.transport import FrameDecoder, InboundRaftProtocol, frame

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))
MSGS = [
    m.RequestVote("a:1", 3, 10, 2, pre_vote=True),
    m.AppendEntries("a:1", 3, 9, 2, (m.Entry(10, 3, 0, b"x" * 100),), 9, 4),
    m.TimeoutNow("b:2", 7),
]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_frames_reassemble_across_any_split(cuts: list[int]) -> None:
    raw = b"".join(frame(x) for x in MSGS)
    dec, got, i = FrameDecoder(), [], 0
    for c in cuts:
        got += dec.feed(raw[i:i + c])
        i += c
    got += dec.feed(raw[i:])
    assert got == MSGS


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_gives_clear_error_or_waits(data: bytes) -> None:
    dec = FrameDecoder()
    for msg in dec.feed(data):
        assert m.decode(m.encode(msg)) == msg
    if dec.failed is not None:
        assert isinstance(dec.failed, MessageDecodeError) and str(dec.failed)
        assert dec.feed(frame(MSGS[0])) == []  # nothing after a bad frame


def test_bad_frame_closes_connection_with_a_log_line() -> None:
    got: list[Any] = []
    proto = InboundRaftProtocol(lambda: got.append)
    t = StringTransport()
    proto.makeConnection(t)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        proto.dataReceived(frame(MSGS[0]) + struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert got == [MSGS[0]]
    assert t.disconnecting
    assert any("closing connection" in str(e.get("log_format")) for e in events)
    t2 = StringTransport()
    p2 = InboundRaftProtocol(lambda: got.append)
    p2.makeConnection(t2)
    p2.dataReceived(struct.pack(">I", 0))  # zero-length frame
    assert t2.disconnecting
