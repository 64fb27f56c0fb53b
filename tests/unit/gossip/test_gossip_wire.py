"""Golden vectors (captured from Go memberlist 0.2.2) and codec round trips."""

from __future__ import annotations

import zlib

import pytest

from wanfedtx.gossip import lzw, wire
from wanfedtx.gossip.errors import CompressionError, EncryptionError, KeyringError, WireError
from wanfedtx.gossip.security import Keyring, decrypt_payload, encrypt_payload
from wanfedtx.gossip.stream import StreamReader, encode_stream


def h(*parts: bytes | str) -> bytes:
    out = b""
    for p in parts:
        out += p.encode() if isinstance(p, str) else p
    return out


def fs(s: str) -> bytes:
    """fixstr header + ascii."""
    return bytes((0xA0 | len(s),)) + s.encode()


LOCAL = bytes.fromhex("7f000001")


def test_alive_golden() -> None:
    msg = wire.Alive(
        incarnation=1, node="b", addr=LOCAL, port=17947, meta=b"meta-b", vsn=wire.make_vsn()
    )
    want = h(
        b"\x04\x86",
        fs("Addr"),
        b"\xa4",
        LOCAL,
        fs("Incarnation"),
        b"\x01",
        fs("Meta"),
        fs("meta-b"),
        fs("Node"),
        fs("b"),
        fs("Port"),
        b"\xcd\x46\x1b",
        fs("Vsn"),
        b"\xa6\x01\x05\x02\x00\x00\x00",
    )
    assert msg.encode() == want
    assert wire.decode_packet_message(want) == msg


def test_ping_golden_with_source_fields() -> None:
    msg = wire.Ping(seq_no=1, node="b", source_addr=LOCAL, source_port=17946, source_node="a")
    want = h(
        b"\x00\x85",
        fs("Node"),
        fs("b"),
        fs("SeqNo"),
        b"\x01",
        fs("SourceAddr"),
        b"\xa4",
        LOCAL,
        fs("SourceNode"),
        fs("a"),
        fs("SourcePort"),
        b"\xcd\x46\x1a",
    )
    assert msg.encode() == want
    assert wire.decode_packet_message(want) == msg


def test_ping_omitempty() -> None:
    enc = wire.Ping(seq_no=7, node="x").encode()
    assert b"Source" not in enc
    assert wire.decode_packet_message(enc) == wire.Ping(seq_no=7, node="x")


def test_ack_and_dead_golden() -> None:
    assert wire.AckResp(seq_no=1).encode() == h(
        b"\x02\x82", fs("Payload"), b"\xc0", fs("SeqNo"), b"\x01"
    )
    dead = h(b"\x05\x83", fs("From"), fs("b"), fs("Incarnation"), b"\x01", fs("Node"), fs("b"))
    assert wire.Dead(incarnation=1, node="b", from_="b").encode() == dead
    assert wire.decode_packet_message(dead) == wire.Dead(1, "b", "b")


def test_pushpull_stream_golden() -> None:
    state = wire.PushNodeState(
        name="b",
        addr=LOCAL,
        port=17947,
        meta=b"meta-b",
        incarnation=1,
        state=0,
        vsn=wire.make_vsn(),
    )
    want = h(
        b"\x06\x83",
        fs("Join"),
        b"\xc3",
        fs("Nodes"),
        b"\x01",
        fs("UserStateLen"),
        b"\x07",
        b"\x87",
        fs("Addr"),
        b"\xa4",
        LOCAL,
        fs("Incarnation"),
        b"\x01",
        fs("Meta"),
        fs("meta-b"),
        fs("Name"),
        fs("b"),
        fs("Port"),
        b"\xcd\x46\x1b",
        fs("State"),
        b"\x00",
        fs("Vsn"),
        b"\xa6\x01\x05\x02\x00\x00\x00",
        b"state-b",
    )
    pp = wire.PushPull(join=True, nodes=(state,), user_state=b"state-b")
    assert pp.encode() == want
    # Fed one byte at a time, the message completes exactly at its last byte (no EOF needed).
    r = StreamReader()
    got = None
    for i in range(len(want)):
        got = r.feed(want[i : i + 1])
        if i < len(want) - 1:
            assert got is None
    assert got == pp


def test_user_msg_stream_and_packet() -> None:
    stream = h(b"\x08\x81", fs("UserMsgLen"), b"\x13", b"direct-from-b (tcp)")
    assert StreamReader().feed(stream) == wire.UserMsg(b"direct-from-b (tcp)")
    assert wire.decode_packet_message(b"\x08hello") == wire.UserMsg(b"hello")


def test_long_strings_use_str16_never_str8() -> None:
    enc = wire.Alive(1, "n" * 40, LOCAL, 1, meta=b"m" * 200).encode()
    assert b"\xda\x00\x28" + b"n" * 40 in enc
    assert b"\xda\x00\xc8" + b"m" * 200 in enc
    assert b"\xd9" not in enc


def test_compress_uses_str16_buf() -> None:
    inner = wire.Alive(1, "b", LOCAL, 17947, b"meta-b", wire.make_vsn()).encode()
    c = wire.compress_message(inner)
    assert c[:1] == b"\x09"
    assert c[1:2] == b"\x82"
    assert fs("Buf") + b"\xda" in c
    assert wire.unpack_packet(c).messages == [wire.decode_packet_message(inner)]


def test_compound_and_crc_roundtrip() -> None:
    parts = [wire.Ping(1, "a").encode(), wire.Suspect(2, "a", "b").encode(), b"\x08raw"]
    packet = wire.add_crc(wire.compress_message(wire.make_compound(parts)))
    assert packet[0] == wire.MsgType.HAS_CRC
    body = wire.strip_crc(packet)
    got = wire.unpack_packet(body)
    assert got.problems == []
    assert got.messages == [wire.Ping(1, "a"), wire.Suspect(2, "a", "b"), wire.UserMsg(b"raw")]
    bad = packet[:5] + bytes((packet[5] ^ 1,)) + packet[6:]
    with pytest.raises(WireError, match="checksum"):
        wire.strip_crc(bad)


def test_truncated_compound_keeps_complete_parts() -> None:
    comp = wire.make_compound([wire.Ping(1, "a").encode(), wire.Ping(2, "b").encode()])
    got = wire.unpack_packet(comp[:-3])
    assert got.messages == [wire.Ping(1, "a")]
    assert got.problems == ["Compound request had 1 truncated messages"]


def test_decode_type_errors_are_wire_errors() -> None:
    with pytest.raises(WireError, match="SeqNo"):
        wire.decode_packet_message(b"\x00" + wire.pack({b"SeqNo": b"x"}))
    with pytest.raises(WireError, match="out of range"):
        wire.decode_packet_message(b"\x00" + wire.pack({b"SeqNo": 1 << 40}))
    with pytest.raises(WireError, match="not supported"):
        wire.decode_packet_message(b"\x63")
    with pytest.raises(WireError, match="truncated"):
        wire.decode_packet_message(b"\x04\x86\xa4Ad")


def test_unknown_keys_skipped_and_missing_keys_zero() -> None:
    body = wire.pack({b"Zzz": [1, 2], b"SeqNo": 5})
    assert wire.decode_packet_message(b"\x02" + body) == wire.AckResp(seq_no=5)


def test_lzw_known_vectors() -> None:
    # Go's compress/lzw output (LSB, 8) for these inputs, checked against the Go build in interop.
    assert lzw.compress(b"") == bytes.fromhex("000302")
    assert lzw.decompress(lzw.compress(b"")) == b""
    for data in (b"a", b"abababababab", bytes(range(256)) * 40, b"x" * 70000):
        assert lzw.decompress(lzw.compress(data)) == data


def test_lzw_errors() -> None:
    with pytest.raises(CompressionError, match="unexpected EOF"):
        lzw.decompress(lzw.compress(b"hello world")[:-2])
    with pytest.raises(CompressionError, match="limit"):
        lzw.decompress(lzw.compress(b"z" * 10000), max_output=100)
    with pytest.raises(CompressionError, match="invalid code"):
        # clear, then code 300 which is not assigned yet
        lzw.decompress(bytes.fromhex("00") + bytes((300 & 0xFF,)) + b"\x02\x00")


def test_encryption_roundtrip_and_wrong_key() -> None:
    k1, k2 = bytes(range(16)), bytes(range(32))
    for vsn in (0, 1):
        enc = encrypt_payload(vsn, k1, b"hello", None)
        assert len(enc) == (29 + 5 if vsn == 1 else 1 + 12 + 16 + 16)
        assert decrypt_payload([k2, k1], enc) == b"hello"
        with pytest.raises(EncryptionError, match="No installed keys"):
            decrypt_payload([k2], enc)
    with pytest.raises(EncryptionError, match="Unsupported encryption version 7"):
        decrypt_payload([k1], b"\x07" + b"\x00" * 40)
    with pytest.raises(EncryptionError, match="too small"):
        decrypt_payload([k1], b"\x01abc")


def test_keyring_rotation() -> None:
    k1, k2 = b"a" * 16, b"b" * 32
    ring = Keyring([k1])
    ring.add_key(k2)
    assert ring.primary_key() == k1
    ring.use_key(k2)
    assert ring.keys() == [k2, k1]
    with pytest.raises(KeyringError, match="primary"):
        ring.remove_key(k2)
    ring.remove_key(k1)
    assert ring.keys() == [k2]
    with pytest.raises(KeyringError, match="16, 24 or 32"):
        Keyring([b"short"])


def test_encrypted_compressed_stream() -> None:
    key = bytes(range(16))
    pp = wire.PushPull(join=False, nodes=(), user_state=b"u" * 100)
    data = encode_stream(pp.encode(), compress=True, keys=[key])
    assert data[0] == wire.MsgType.ENCRYPT
    assert int.from_bytes(data[1:5], "big") == len(data) - 5
    r = StreamReader(keys=[key], require_encryption=True)
    assert r.feed(data[:10]) is None
    assert r.feed(data[10:]) == pp
    with pytest.raises(WireError, match="not encrypted"):
        StreamReader(keys=[key], require_encryption=True).feed(pp.encode())
    with pytest.raises(WireError, match="encryption is not configured"):
        StreamReader().feed(data)
    with pytest.raises(EncryptionError):
        StreamReader(keys=[b"z" * 16]).feed(data)


def test_crc_is_ieee() -> None:
    assert wire.add_crc(b"abc")[1:5] == zlib.crc32(b"abc").to_bytes(4, "big")


def test_codec_tables_come_from_attrs_metadata() -> None:
    assert wire.Ping.go_fields() == (
        ("SeqNo", "seq_no", "u32", False),
        ("Node", "node", "str", False),
        ("SourceAddr", "source_addr", "bytes", True),
        ("SourcePort", "source_port", "u16", True),
        ("SourceNode", "source_node", "str", True),
    )
    # Suspect and Dead share the accusation body through attrs inheritance.
    assert wire.Dead.go_fields() == wire.Suspect.go_fields()
    assert [f[0] for f in wire.Dead.go_fields()] == ["Incarnation", "Node", "From"]
    with pytest.raises(ValueError, match="unknown wire kind"):
        wire.go("X", "float")
