"""Hypothesis fuzzing of the packet and stream decoders: bad input gives WireError, never a crash.

Example count: ``WANFED_FUZZ_EXAMPLES`` (default 200 per test).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanfedtx.gossip import lzw, wire
from wanfedtx.gossip.errors import WireError
from wanfedtx.gossip.security import decrypt_payload, encrypt_payload
from wanfedtx.gossip.stream import StreamReader, encode_stream

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes(range(16))
LOCAL = b"\x7f\x00\x00\x01"

VALID_MSGS = [
    wire.Ping(1, "a", LOCAL, 7946, "b").encode(),
    wire.IndirectPingReq(2, LOCAL, 7946, "c", True).encode(),
    wire.AckResp(3, b"payload").encode(),
    wire.NackResp(4).encode(),
    wire.Suspect(5, "a", "b").encode(),
    wire.Alive(6, "a", LOCAL, 7946, b"\xff\x80", wire.make_vsn()).encode(),
    wire.Dead(7, "a", "a").encode(),
    b"\x08user-data",
]
VALID_PACKET = wire.add_crc(wire.compress_message(wire.make_compound(VALID_MSGS)))
VALID_STREAM = wire.PushPull(
    True,
    (wire.PushNodeState("a", LOCAL, 7946, b"m", 1, 0, wire.make_vsn()),),
    b"user-state",
).encode()


def mutate(data: bytes, pos: int, kind: int, byte: int) -> bytes:
    if not data:
        return bytes((byte,))
    pos %= len(data)
    if kind == 0:
        return data[:pos]
    if kind == 1:
        return data[:pos] + bytes((data[pos] ^ (byte or 1),)) + data[pos + 1 :]
    if kind == 2:
        return data[:pos] + bytes((byte,)) + data[pos:]
    return data[:pos] + data[pos + 1 :]


def decode_packet(buf: bytes, keys: list[bytes] | None = None) -> wire.Unpacked | None:
    try:
        if keys:
            buf = decrypt_payload(keys, buf)
        return wire.unpack_packet(wire.strip_crc(buf))
    except WireError:
        return None


@FUZZ
@given(st.binary(max_size=2048))
def test_random_packets(data: bytes) -> None:
    decode_packet(data)


@FUZZ
@given(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 255))
def test_mutated_packets(pos: int, kind: int, byte: int) -> None:
    got = decode_packet(mutate(VALID_PACKET, pos, kind, byte))
    if got is not None:
        assert len(got.messages) <= len(VALID_MSGS)


@FUZZ
@given(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 255))
def test_mutated_compound_inside(pos: int, kind: int, byte: int) -> None:
    body = mutate(wire.make_compound(VALID_MSGS), pos, kind, byte)
    wire.unpack_packet(body)


@FUZZ
@given(st.binary(max_size=512))
def test_random_lzw(data: bytes) -> None:
    try:
        lzw.decompress(data, max_output=1 << 20)
    except WireError:
        pass


@FUZZ
@given(st.binary(max_size=4000))
def test_lzw_roundtrip(data: bytes) -> None:
    assert lzw.decompress(lzw.compress(data)) == data


@FUZZ
@given(st.binary(max_size=256), st.sampled_from([None, [KEY], [b"k" * 32, KEY]]))
def test_random_encrypted_packets(data: bytes, keys: list[bytes] | None) -> None:
    decode_packet(data, keys or [b"q" * 16])


@FUZZ
@given(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 255))
def test_wrong_key_and_tampered_ciphertext(pos: int, kind: int, byte: int) -> None:
    enc = encrypt_payload(1, KEY, VALID_PACKET)
    assert decode_packet(enc, [b"w" * 16]) is None
    got = decode_packet(mutate(enc, pos, kind, byte), [KEY])
    if got is not None:  # only when the mutation left the payload intact (e.g. appended byte lost)
        assert got.messages


def feed_all(reader: StreamReader, data: bytes, step: int) -> object:
    step = max(1, step)
    try:
        for i in range(0, len(data), step):
            msg = reader.feed(data[i : i + step])
            if msg is not None:
                return msg
    except WireError:
        return "error"
    return None


@FUZZ
@given(st.binary(max_size=1024), st.integers(1, 64))
def test_random_streams(data: bytes, step: int) -> None:
    feed_all(StreamReader(max_bytes=1 << 20), data, step)


@FUZZ
@given(
    st.integers(0, 10**6),
    st.integers(0, 3),
    st.integers(0, 255),
    st.integers(1, 50),
    st.booleans(),
    st.booleans(),
)
def test_mutated_streams(
    pos: int, kind: int, byte: int, step: int, compress: bool, encrypt: bool
) -> None:
    keys = [KEY] if encrypt else None
    data = encode_stream(VALID_STREAM, compress=compress, keys=keys)
    assert isinstance(feed_all(StreamReader(keys=keys), data, step), wire.PushPull)
    feed_all(StreamReader(keys=keys, max_bytes=1 << 20), mutate(data, pos, kind, byte), step)


@FUZZ
@given(st.integers(0, 2**31), st.integers(0, 2**31))
def test_oversize_announcements(nodes: int, user_len: int) -> None:
    data = wire.PushPullHeader(nodes=nodes, user_state_len=user_len, join=False).encode()
    r = StreamReader(max_bytes=1 << 20)
    res = feed_all(r, data, 7)
    if nodes == 0 and user_len == 0:
        assert res == wire.PushPull(False, (), b"")
    if nodes > (1 << 20) or user_len > (1 << 20):
        assert res == "error"


# Round trips: any message the encoder writes decodes to itself, through every packet layer
# (compound, compression, CRC, encryption) and through a stream read in any chunking.
_u32 = st.integers(0, 2**32 - 1)
_u16 = st.integers(0, 2**16 - 1)
_name = st.text(max_size=20)
_addr = st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16)
_packet_msgs = st.one_of(
    st.builds(wire.Ping, _u32, _name, st.just(b"") | _addr, _u16, _name),
    st.builds(wire.IndirectPingReq, _u32, _addr, _u16, _name, st.booleans()),
    st.builds(wire.AckResp, _u32, st.binary(max_size=40)),
    st.builds(wire.NackResp, _u32),
    st.builds(wire.Suspect, _u32, _name, _name),
    st.builds(wire.Dead, _u32, _name, _name),
    st.builds(wire.Alive, _u32, _name, _addr, _u16, st.binary(max_size=40),
              st.just(wire.make_vsn())),
    st.builds(wire.UserMsg, st.binary(max_size=60)),
)


@FUZZ
@given(st.lists(_packet_msgs, min_size=1, max_size=6), st.booleans(), st.booleans())
def test_packet_decode_of_encode_is_identity(
    msgs: list[wire.PacketMessage], compress: bool, encrypt: bool
) -> None:
    body = wire.make_compound([m.encode() for m in msgs]) if len(msgs) > 1 else msgs[0].encode()
    if compress:
        body = wire.compress_message(body)
    packet = wire.add_crc(body)
    keys = [KEY] if encrypt else None
    if encrypt:
        packet = encrypt_payload(1, KEY, packet)
    got = decode_packet(packet, keys)
    assert got is not None and got.problems == []
    assert got.messages == msgs


_node_states = st.builds(
    wire.PushNodeState, _name, _addr, _u16, st.binary(max_size=30), _u32, st.integers(0, 3),
    st.just(wire.make_vsn()),
)


@FUZZ
@given(
    st.builds(wire.PushPull, st.booleans(), st.lists(_node_states, max_size=5).map(tuple),
              st.binary(max_size=100)),
    st.integers(1, 64), st.booleans(), st.booleans(),
)
def test_stream_decode_of_encode_is_identity(
    msg: wire.PushPull, step: int, compress: bool, encrypt: bool
) -> None:
    keys = [KEY] if encrypt else None
    data = encode_stream(msg.encode(), compress=compress, keys=keys)
    assert feed_all(StreamReader(keys=keys, max_bytes=1 << 20), data, step) == msg
