"""Inbound stream bounds of memberlist v0.6.0: what a peer declares is checked before anything is
read or allocated for it, with memberlist's own error texts."""

from __future__ import annotations

import struct

import msgpack
import pytest

from wanfedtx.gossip import lzw, stream
from wanfedtx.gossip.errors import CompressionError, WireError
from wanfedtx.gossip.stream import StreamReader
from wanfedtx.gossip.wire import Compress, UserMsg

KEY = bytes(range(16))
MIB = 1024 * 1024


def header(tag: int, fields: dict[str, object]) -> bytes:
    return bytes((tag,)) + msgpack.packb(fields)


def test_limits_are_memberlist_v060s() -> None:
    assert stream.MAX_PUSH_NODES == 1_048_576
    assert stream.MAX_USER_BYTES == 20 * MIB
    assert stream.MAX_DECOMPRESSED_BYTES == 40 * MIB


def test_push_pull_with_too_many_nodes_is_refused_at_the_header() -> None:
    data = header(6, {"Nodes": 1_048_577, "UserStateLen": 0, "Join": False})
    with pytest.raises(WireError) as e:
        StreamReader().feed(data)
    assert str(e.value) == "number of nodes in header (1048577) exceeds limit"


def test_push_pull_at_the_node_limit_waits_for_its_nodes() -> None:
    data = header(6, {"Nodes": 1_048_576, "UserStateLen": 0, "Join": False})
    assert StreamReader().feed(data) is None


def test_push_pull_with_a_huge_user_state_is_refused_at_the_header() -> None:
    data = header(6, {"Nodes": 0, "UserStateLen": 20 * MIB + 1, "Join": False})
    with pytest.raises(WireError) as e:
        StreamReader().feed(data)
    assert str(e.value) == "user state length (20971521) exceeds limit"


def test_negative_declared_lengths_are_refused() -> None:
    with pytest.raises(WireError, match=r"number of nodes in header \(-1\)"):
        StreamReader().feed(header(6, {"Nodes": -1, "UserStateLen": 0, "Join": False}))
    with pytest.raises(WireError, match=r"user message length \(-5\)"):
        StreamReader().feed(header(8, {"UserMsgLen": -5}))


def test_huge_user_message_is_refused_at_the_header() -> None:
    with pytest.raises(WireError) as e:
        StreamReader().feed(header(8, {"UserMsgLen": 20 * MIB + 1}))
    assert str(e.value) == "user message length (20971521) exceeds limit"


def test_encrypted_stream_over_20_mib_is_refused_at_the_length() -> None:
    data = bytes((10,)) + struct.pack(">I", 20 * MIB + 1)
    with pytest.raises(WireError) as e:
        StreamReader(keys=[KEY]).feed(data)
    assert str(e.value) == "Remote node state is larger than limit (20971521)"


def test_decompressed_message_over_the_limit_is_refused() -> None:
    # the real limit is 40 MiB (twice the 20 MiB state budget); compressing that much in pure
    # Python is slow, so a reader with a 512 KiB budget stands in (its limit is 1 MiB)
    inner = header(8, {"UserMsgLen": MIB // 2}) + bytes(MIB)
    bomb = Compress(algo=0, buf=lzw.compress(inner)).encode()
    assert len(bomb) < 16 * 1024
    with pytest.raises(CompressionError) as e:
        StreamReader(max_bytes=MIB // 2).feed(bomb)
    assert str(e.value) == "decompressed message is larger than limit (1048576)"


def test_decompressed_message_within_the_limit_is_read() -> None:
    inner = header(8, {"UserMsgLen": 1000}) + b"u" * 1000
    msg = StreamReader(max_bytes=MIB // 2).feed(Compress(algo=0, buf=lzw.compress(inner)).encode())
    assert msg == UserMsg(b"u" * 1000)


def test_lzw_bomb_stops_at_max_output() -> None:
    packed = lzw.compress(bytes(64 * 1024))
    with pytest.raises(CompressionError, match=r"larger than limit \(4096\)"):
        lzw.decompress(packed, max_output=4096)
    assert lzw.decompress(packed, max_output=64 * 1024) == bytes(64 * 1024)
