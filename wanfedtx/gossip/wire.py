# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""memberlist 0.2.2 wire codec: message types, Go msgpack bodies, compound, CRC, compress.

Each message is one type byte followed by one msgpack map encoded like hashicorp/go-msgpack 0.5
(``MsgpackHandle{}`` defaults): struct fields as a map keyed by Go field name, keys sorted, strings
and ``[]byte`` both as old-style raw (never str8/bin), nil slices as nil,
``omitempty`` fields left out.
Decoding accepts any key order, skips unknown keys, takes missing keys as zero values and checks
types and ranges; anything else raises ``WireError``.

Packet layering: ``[encrypt] -> [0c crc32] -> [09 compress] -> [07 compound]``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any, ClassVar, Self, TypeVar

import attrs
import msgpack

from wanfedtx.packing import pack_without_bin_type

from . import lzw
from .errors import CompressionError, WireError


class MsgType(IntEnum):
    """memberlist ``messageType`` bytes."""

    PING = 0
    INDIRECT_PING = 1
    ACK_RESP = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK_RESP = 11
    HAS_CRC = 12
    ERR = 13


class NodeStateType(IntEnum):
    """``pushNodeState.State`` values."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


META_MAX_SIZE = 512
COMPOUND_HEADER_OVERHEAD = 2
COMPOUND_OVERHEAD = 2
USER_MSG_OVERHEAD = 1
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024
MAX_PACKET_SIZE = 65536
LZW_ALGO = 0
#: Nesting limit for compound/compress inside each other (Go has none; sizes bound it there).
MAX_NESTING = 8

# Protocol versions of memberlist 0.2.2.
PROTOCOL_VERSION_MIN = 1
PROTOCOL_VERSION_MAX = 5
PROTOCOL_VERSION_DEFAULT = 2

_U8 = (0, 0xFF)
_U16 = (0, 0xFFFF)
_U32 = (0, 0xFFFFFFFF)
_U64 = (0, 0xFFFFFFFFFFFFFFFF)
_I64 = (-(1 << 63), (1 << 63) - 1)


# --------------------------------------------------------------------------------------------
# msgpack helpers (Go encoding)


def pack(obj: Any) -> bytes:
    """msgpack-encode like go-msgpack: str and bytes both as raw, no bin types."""
    return pack_without_bin_type(obj)


def unpack_one(buf: bytes) -> tuple[Any, int]:
    """Decode the first msgpack object of ``buf``; return it and the bytes it used."""
    unpacker = msgpack.Unpacker(
        raw=True,
        strict_map_key=False,
        max_buffer_size=len(buf) + 16,
        max_str_len=len(buf) + 16,
        max_bin_len=len(buf) + 16,
        max_array_len=len(buf) + 16,
        max_map_len=len(buf) + 16,
        timestamp=0,
    )
    unpacker.feed(buf)
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise WireError("truncated msgpack body") from None
    except Exception as exc:  # msgpack raises several types for corrupt input
        raise WireError(f"bad msgpack body: {exc}") from None
    return obj, unpacker.tell()


def go_str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return value
    raise WireError(f"field {field}: expected a string, got {type(value).__name__}")


def go_bytes(value: Any, field: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list | tuple) and all(isinstance(x, int) and 0 <= x <= 255 for x in value):
        return bytes(value)
    raise WireError(f"field {field}: expected bytes, got {type(value).__name__}")


def go_int(value: Any, field: str, bounds: tuple[int, int]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"field {field}: expected an integer, got {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise WireError(f"field {field}: integer {value} out of range")
    return value


def go_bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise WireError(f"field {field}: expected a bool, got {type(value).__name__}")


def enc_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def enc_bytes(value: bytes) -> bytes | None:
    """Go encodes a nil ``[]byte`` as msgpack nil; we send empty byte fields as nil too."""
    return value if value else None


def as_map(obj: Any, what: str) -> Mapping[bytes, Any]:
    if not isinstance(obj, dict):
        raise WireError(f"{what}: expected a msgpack map, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------------------
# Message bodies. Each encoded attribute carries its Go field in its attrs metadata:
# ``attrs.field(metadata=go("SeqNo", "u32"))``. Kinds: str, bytes, bool, u8/u16/u32/u64/int.

_Kind = str
_BOUNDS: dict[str, tuple[int, int]] = {
    "u8": _U8,
    "u16": _U16,
    "u32": _U32,
    "u64": _U64,
    "int": _I64,
}
_GO_KEY = "wanfedtx.gossip.wire.go"

M = TypeVar("M", bound="Body")


@attrs.frozen
class GoField:
    """How one attribute travels: its Go struct field name, its kind, ``omitempty``."""

    name: str
    kind: _Kind
    omitempty: bool = False


def go(name: str, kind: _Kind, omitempty: bool = False) -> dict[str, GoField]:
    """attrs field metadata naming the Go struct field an attribute is encoded as."""
    if kind not in _BOUNDS and kind not in ("str", "bytes", "bool"):
        raise ValueError(f"unknown wire kind {kind!r}")
    return {_GO_KEY: GoField(name, kind, omitempty)}


#: (Go name, attribute, kind, omitempty)
_FieldRow = tuple[str, str, _Kind, bool]


class Body:
    """A msgpack struct body; subclasses are attrs classes whose fields carry ``go(...)``."""

    TYPE: ClassVar[int] = -1
    _FIELDS: ClassVar[tuple[_FieldRow, ...]]
    _SORTED: ClassVar[tuple[_FieldRow, ...]]

    @classmethod
    def go_fields(cls) -> tuple[_FieldRow, ...]:
        """The encoded fields in declaration order, read from the attrs field metadata."""
        cached: tuple[_FieldRow, ...] | None = cls.__dict__.get("_FIELDS")
        if cached is None:
            rows: list[_FieldRow] = []
            for a in getattr(cls, "__attrs_attrs__", ()):
                g = a.metadata.get(_GO_KEY)
                if isinstance(g, GoField):
                    rows.append((g.name, a.name, g.kind, g.omitempty))
            cached = tuple(rows)
            cls._FIELDS = cached
        return cached

    def to_map(self) -> dict[bytes, Any]:
        out: dict[bytes, Any] = {}
        for go_name, attr, kind, omitempty in self._sorted_fields():
            value = getattr(self, attr)
            if omitempty and not value:
                continue
            if kind == "str":
                out[go_name.encode()] = enc_str(value)
            elif kind == "bytes":
                out[go_name.encode()] = enc_bytes(value)
            else:
                out[go_name.encode()] = value
        return out

    @classmethod
    def _sorted_fields(cls) -> tuple[_FieldRow, ...]:
        cached: tuple[_FieldRow, ...] | None = cls.__dict__.get("_SORTED")
        if cached is None:
            cached = tuple(sorted(cls.go_fields(), key=lambda f: f[0].encode()))
            cls._SORTED = cached
        return cached

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        m = as_map(obj, cls.__name__)
        kwargs: dict[str, Any] = {}
        for go_name, attr, kind, _ in cls.go_fields():
            raw = m.get(go_name.encode(), None)
            field = f"{cls.__name__}.{go_name}"
            if kind == "str":
                kwargs[attr] = go_str(raw, field)
            elif kind == "bytes":
                kwargs[attr] = go_bytes(raw, field)
            elif kind == "bool":
                kwargs[attr] = go_bool(raw, field)
            else:
                kwargs[attr] = go_int(raw, field, _BOUNDS[kind])
        return cls(**kwargs)

    def encode_body(self) -> bytes:
        return pack(self.to_map())

    def encode(self) -> bytes:
        """Type byte + msgpack body."""
        return bytes((self.TYPE,)) + self.encode_body()

    @classmethod
    def decode_body(cls, buf: bytes) -> Self:
        obj, _ = unpack_one(buf)
        return cls.from_obj(obj)


@attrs.frozen
class Ping(Body):
    TYPE = MsgType.PING
    seq_no: int = attrs.field(metadata=go("SeqNo", "u32"))
    node: str = attrs.field(default="", metadata=go("Node", "str"))
    source_addr: bytes = attrs.field(
        default=b"", metadata=go("SourceAddr", "bytes", omitempty=True)
    )
    source_port: int = attrs.field(default=0, metadata=go("SourcePort", "u16", omitempty=True))
    source_node: str = attrs.field(default="", metadata=go("SourceNode", "str", omitempty=True))


@attrs.frozen
class IndirectPingReq(Body):
    TYPE = MsgType.INDIRECT_PING
    seq_no: int = attrs.field(metadata=go("SeqNo", "u32"))
    target: bytes = attrs.field(metadata=go("Target", "bytes"))
    port: int = attrs.field(metadata=go("Port", "u16"))
    node: str = attrs.field(default="", metadata=go("Node", "str"))
    nack: bool = attrs.field(default=False, metadata=go("Nack", "bool"))
    source_addr: bytes = attrs.field(
        default=b"", metadata=go("SourceAddr", "bytes", omitempty=True)
    )
    source_port: int = attrs.field(default=0, metadata=go("SourcePort", "u16", omitempty=True))
    source_node: str = attrs.field(default="", metadata=go("SourceNode", "str", omitempty=True))


@attrs.frozen
class AckResp(Body):
    TYPE = MsgType.ACK_RESP
    seq_no: int = attrs.field(metadata=go("SeqNo", "u32"))
    payload: bytes = attrs.field(default=b"", metadata=go("Payload", "bytes"))


@attrs.frozen
class NackResp(Body):
    TYPE = MsgType.NACK_RESP
    seq_no: int = attrs.field(metadata=go("SeqNo", "u32"))


@attrs.frozen
class ErrResp(Body):
    TYPE = MsgType.ERR
    error: str = attrs.field(metadata=go("Error", "str"))


@attrs.frozen
class _Accusation(Body):
    """The body ``suspect`` and ``dead`` share: who says which incarnation of a node failed."""

    incarnation: int = attrs.field(metadata=go("Incarnation", "u32"))
    node: str = attrs.field(metadata=go("Node", "str"))
    from_: str = attrs.field(metadata=go("From", "str"))


@attrs.frozen
class Suspect(_Accusation):
    TYPE = MsgType.SUSPECT


@attrs.frozen
class Alive(Body):
    TYPE = MsgType.ALIVE
    incarnation: int = attrs.field(metadata=go("Incarnation", "u32"))
    node: str = attrs.field(metadata=go("Node", "str"))
    addr: bytes = attrs.field(metadata=go("Addr", "bytes"))
    port: int = attrs.field(metadata=go("Port", "u16"))
    meta: bytes = attrs.field(default=b"", metadata=go("Meta", "bytes"))
    vsn: bytes = attrs.field(default=b"", metadata=go("Vsn", "bytes"))


@attrs.frozen
class Dead(_Accusation):
    TYPE = MsgType.DEAD


@attrs.frozen
class PushPullHeader(Body):
    TYPE = MsgType.PUSH_PULL
    nodes: int = attrs.field(metadata=go("Nodes", "int"))
    user_state_len: int = attrs.field(metadata=go("UserStateLen", "int"))
    join: bool = attrs.field(metadata=go("Join", "bool"))


@attrs.frozen
class PushNodeState(Body):
    name: str = attrs.field(metadata=go("Name", "str"))
    addr: bytes = attrs.field(metadata=go("Addr", "bytes"))
    port: int = attrs.field(metadata=go("Port", "u16"))
    meta: bytes = attrs.field(metadata=go("Meta", "bytes"))
    incarnation: int = attrs.field(metadata=go("Incarnation", "u32"))
    state: int = attrs.field(metadata=go("State", "int"))
    vsn: bytes = attrs.field(metadata=go("Vsn", "bytes"))


@attrs.frozen
class UserMsgHeader(Body):
    TYPE = MsgType.USER
    user_msg_len: int = attrs.field(metadata=go("UserMsgLen", "int"))


@attrs.frozen
class Compress(Body):
    TYPE = MsgType.COMPRESS
    algo: int = attrs.field(metadata=go("Algo", "u8"))
    buf: bytes = attrs.field(metadata=go("Buf", "bytes"))


@attrs.frozen
class UserMsg:
    """A user message (type 8). In packets the raw bytes follow the type byte directly."""

    TYPE: ClassVar[int] = MsgType.USER
    data: bytes

    def encode(self) -> bytes:
        return bytes((MsgType.USER,)) + self.data


@attrs.frozen
class PushPull:
    """A whole push/pull message: header, node states and the delegate's raw user state."""

    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""

    def encode(self) -> bytes:
        parts = [
            PushPullHeader(
                nodes=len(self.nodes), user_state_len=len(self.user_state), join=self.join
            ).encode()
        ]
        parts.extend(n.encode_body() for n in self.nodes)
        parts.append(self.user_state)
        return b"".join(parts)


PacketMessage = Ping | IndirectPingReq | AckResp | NackResp | Suspect | Alive | Dead | UserMsg
StreamMessage = PushPull | UserMsg | Ping | AckResp | ErrResp

_PACKET_BODIES: dict[int, type[Body]] = {
    MsgType.PING: Ping,
    MsgType.INDIRECT_PING: IndirectPingReq,
    MsgType.ACK_RESP: AckResp,
    MsgType.NACK_RESP: NackResp,
    MsgType.SUSPECT: Suspect,
    MsgType.ALIVE: Alive,
    MsgType.DEAD: Dead,
    MsgType.ERR: ErrResp,
}


# --------------------------------------------------------------------------------------------
# Compound, CRC, compression


def make_compound(msgs: Sequence[bytes]) -> bytes:
    """``07, n, n x u16 BE length, messages``; at most 255 messages, each < 64 KiB."""
    if len(msgs) > 255:
        raise ValueError("a compound message holds at most 255 messages; use make_compounds")
    out = bytearray((MsgType.COMPOUND, len(msgs)))
    for m in msgs:
        if len(m) > 0xFFFF:
            raise ValueError("a compound part must be shorter than 64 KiB")
        out += struct.pack(">H", len(m))
    for m in msgs:
        out += m
    return bytes(out)


def make_compounds(msgs: Sequence[bytes]) -> list[bytes]:
    """Split ``msgs`` into compound messages of at most 255 parts each."""
    return [make_compound(msgs[i : i + 255]) for i in range(0, len(msgs), 255)]


def split_compound(body: bytes) -> tuple[list[bytes], int]:
    """Parse a compound body (after the 07 byte): the parts and how many were truncated."""
    if len(body) < 1:
        raise WireError("missing compound length byte")
    n = body[0]
    body = body[1:]
    if len(body) < n * 2:
        raise WireError("truncated len slice")
    lengths = struct.unpack(f">{n}H", body[: n * 2])
    body = body[n * 2 :]
    parts: list[bytes] = []
    for i, ln in enumerate(lengths):
        if len(body) < ln:
            return parts, n - i
        parts.append(body[:ln])
        body = body[ln:]
    return parts, 0


def add_crc(payload: bytes) -> bytes:
    """``0c + crc32-IEEE(payload) BE + payload``."""
    return bytes((MsgType.HAS_CRC,)) + struct.pack(">I", zlib.crc32(payload)) + payload


def strip_crc(buf: bytes) -> bytes:
    """If ``buf`` is CRC-framed, verify and strip the frame; raise ``WireError`` on mismatch."""
    if len(buf) >= 5 and buf[0] == MsgType.HAS_CRC:
        (want,) = struct.unpack(">I", buf[1:5])
        payload = buf[5:]
        if zlib.crc32(payload) != want:
            raise WireError("Detected invalid checksum (CRC mismatch); dropping the packet")
        return payload
    return buf


def compress_message(msg: bytes) -> bytes:
    """``09 + {Algo: 0, Buf: lzw(msg)}``."""
    return Compress(algo=LZW_ALGO, buf=lzw.compress(msg)).encode()


def decompress_body(body: bytes, max_output: int = lzw.DEFAULT_MAX_OUTPUT) -> tuple[bytes, int]:
    """Decode a ``compress`` map (after the 09 byte); return the inner message and bytes used."""
    obj, used = unpack_one(body)
    c = Compress.from_obj(obj)
    if c.algo != LZW_ALGO:
        raise CompressionError(f"Cannot decompress unknown algorithm {c.algo}")
    return lzw.decompress(c.buf, max_output), used


# --------------------------------------------------------------------------------------------
# Packet decoding


@attrs.frozen
class Unpacked:
    """Messages found in one packet, plus problems met on the way (each worth a log line)."""

    messages: list[PacketMessage]
    problems: list[str]


def decode_packet_message(buf: bytes) -> PacketMessage:
    """Decode one non-container message (type byte + body)."""
    if not buf:
        raise WireError("missing message type byte")
    t = buf[0]
    if t == MsgType.USER:
        return UserMsg(buf[1:])
    cls = _PACKET_BODIES.get(t)
    if cls is None or t == MsgType.ERR:
        raise WireError(f"msg type ({t}) not supported")
    return cls.decode_body(buf[1:])  # type: ignore[return-value]


def unpack_packet(buf: bytes) -> Unpacked:
    """Flatten a (decrypted, CRC-stripped) packet into messages; never raises."""
    msgs: list[PacketMessage] = []
    problems: list[str] = []
    _unpack_into(buf, msgs, problems, 0)
    return Unpacked(msgs, problems)


def _unpack_into(buf: bytes, msgs: list[PacketMessage], problems: list[str], depth: int) -> None:
    if depth > MAX_NESTING:
        problems.append("compound/compress nesting too deep; dropping")
        return
    if not buf:
        problems.append("empty message; dropping")
        return
    t = buf[0]
    try:
        if t == MsgType.COMPOUND:
            parts, trunc = split_compound(buf[1:])
            if trunc:
                problems.append(f"Compound request had {trunc} truncated messages")
            for p in parts:
                _unpack_into(p, msgs, problems, depth + 1)
        elif t == MsgType.COMPRESS:
            inner, _ = decompress_body(buf[1:], max_output=MAX_PACKET_SIZE * 64)
            _unpack_into(inner, msgs, problems, depth + 1)
        else:
            msgs.append(decode_packet_message(buf))
    except WireError as exc:
        problems.append(f"{_type_name(t)}: {exc}")


def _type_name(t: int) -> str:
    try:
        return MsgType(t).name.lower()
    except ValueError:
        return f"type {t}"


def iter_parts(msgs: Iterable[Body | UserMsg]) -> Iterator[bytes]:
    for m in msgs:
        yield m.encode()


# --------------------------------------------------------------------------------------------
# Versions


def make_vsn(
    pmin: int = PROTOCOL_VERSION_MIN,
    pmax: int = PROTOCOL_VERSION_MAX,
    pcur: int = PROTOCOL_VERSION_DEFAULT,
    dmin: int = 0,
    dmax: int = 0,
    dcur: int = 0,
) -> bytes:
    return bytes((pmin, pmax, pcur, dmin, dmax, dcur))


def vsn_tuple(vsn: bytes) -> tuple[int, int, int, int, int, int]:
    """Pad a received Vsn (possibly short, from old nodes) to 6 values."""
    v = (bytes(vsn) + b"\x00" * 6)[:6]
    return (v[0], v[1], v[2], v[3], v[4], v[5])
