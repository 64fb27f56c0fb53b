# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_core -*-
"""Raft messages as frozen attrs classes, with explicit msgpack encoding and a strict decoder.

Wire form of every message: a msgpack array ``[type_code, field1, field2, ...]`` with the fields
in the order of the class's ``FIELDS``. Log entries are ``[index, term, kind, data]``. ``decode``
checks the array shape, every field's type and range, and raises ``MessageDecodeError`` naming the
message type and field for anything else; it never returns a half-valid message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import msgpack

from wanfedtx.packing import pack
from wanfedtx.raft.errors import MessageDecodeError

# Entry kinds.
ENTRY_COMMAND = 0  # an FSM command; data is opaque bytes
ENTRY_NOOP = 1  # appended by a new leader to commit entries of earlier terms
ENTRY_CONFIG = 2  # data is msgpack list of voter ids (sorted)
_ENTRY_KINDS = (ENTRY_COMMAND, ENTRY_NOOP, ENTRY_CONFIG)

_U64 = (1 << 64) - 1


@attrs.frozen(slots=True)
class Entry:
    index: int
    term: int
    kind: int = ENTRY_COMMAND
    data: bytes = b""


def encode_voters(voters: frozenset[str] | list[str]) -> bytes:
    """The data of a configuration entry: the sorted voter ids as a msgpack array."""
    out: bytes = msgpack.packb(sorted(voters), use_bin_type=True)
    return out


def decode_voters(data: bytes) -> frozenset[str]:
    """Inverse of ``encode_voters``; raises ``MessageDecodeError`` on anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise MessageDecodeError(f"configuration entry is not msgpack: {e}") from None
    if not isinstance(obj, list) or not all(isinstance(v, str) and v for v in obj):
        raise MessageDecodeError("configuration entry must be a list of non-empty voter ids")
    return frozenset(obj)


@attrs.frozen(slots=True)
class RequestVote:
    TYPE: ClassVar[int] = 1
    FIELDS: ClassVar[tuple[str, ...]] = (
        "src",
        "term",
        "last_log_index",
        "last_log_term",
        "pre_vote",
        "transfer",
    )
    src: str
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent after TimeoutNow: voters ignore leader stickiness


@attrs.frozen(slots=True)
class RequestVoteResponse:
    TYPE: ClassVar[int] = 2
    FIELDS: ClassVar[tuple[str, ...]] = ("src", "term", "granted", "pre_vote", "leader")
    OPTIONAL: ClassVar[int] = 1  # trailing fields older peers do not send
    src: str
    term: int
    granted: bool
    pre_vote: bool = False
    leader: str = ""  # the voter's known leader ("" if none): lets a stale server place it


@attrs.frozen(slots=True)
class AppendEntries:
    TYPE: ClassVar[int] = 3
    FIELDS: ClassVar[tuple[str, ...]] = (
        "src",
        "term",
        "prev_index",
        "prev_term",
        "entries",
        "leader_commit",
        "seq",
    )
    src: str
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    seq: int = 0  # heartbeat round, echoed back; used for leader verification


@attrs.frozen(slots=True)
class AppendEntriesResponse:
    TYPE: ClassVar[int] = 4
    FIELDS: ClassVar[tuple[str, ...]] = ("src", "term", "success", "match_index", "hint", "seq")
    src: str
    term: int
    success: bool
    match_index: int  # on success: the last index known to match the leader's log
    hint: int  # on failure: the leader should retry from hint + 1
    seq: int = 0


@attrs.frozen(slots=True)
class InstallSnapshot:
    TYPE: ClassVar[int] = 5
    FIELDS: ClassVar[tuple[str, ...]] = (
        "src",
        "term",
        "last_index",
        "last_term",
        "voters",
        "offset",
        "data",
        "done",
        "seq",
    )
    src: str
    term: int
    last_index: int
    last_term: int
    voters: tuple[str, ...]
    offset: int
    data: bytes
    done: bool
    seq: int = 0


@attrs.frozen(slots=True)
class InstallSnapshotResponse:
    TYPE: ClassVar[int] = 6
    FIELDS: ClassVar[tuple[str, ...]] = ("src", "term", "last_index", "next_offset", "done", "seq")
    src: str
    term: int
    last_index: int
    next_offset: int  # the byte offset the follower wants next
    done: bool  # the follower has installed the whole snapshot
    seq: int = 0


@attrs.frozen(slots=True)
class TimeoutNow:
    TYPE: ClassVar[int] = 7
    FIELDS: ClassVar[tuple[str, ...]] = ("src", "term")
    src: str
    term: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)

_CLASSES: dict[int, type[Any]] = {
    c.TYPE: c
    for c in (
        RequestVote,
        RequestVoteResponse,
        AppendEntries,
        AppendEntriesResponse,
        InstallSnapshot,
        InstallSnapshotResponse,
        TimeoutNow,
    )
}


def _wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    if isinstance(value, Entry):
        return [value.index, value.term, value.kind, value.data]
    return value


def encode(msg: Message) -> bytes:
    """Encode one message to bytes (msgpack)."""
    if type(msg) is AppendEntries:  # the hot one: the same array as the generic path below
        body = [3, msg.src, msg.term, msg.prev_index, msg.prev_term,
                [[e.index, e.term, e.kind, e.data] for e in msg.entries], msg.leader_commit,
                msg.seq]
    else:
        body = [msg.TYPE] + [_wire(getattr(msg, f)) for f in msg.FIELDS]
    return pack(body)


# -- decoding -----------------------------------------------------------------------------------


def _uint(name: str, v: Any) -> int:
    if type(v) is not int or v < 0 or v > _U64:
        raise MessageDecodeError(f"field {name!r} must be an unsigned integer, got {v!r:.40}")
    return v


def _str(name: str, v: Any) -> str:
    if type(v) is not str or not v:
        raise MessageDecodeError(f"field {name!r} must be a non-empty string, got {v!r:.40}")
    return v


def _bool(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise MessageDecodeError(f"field {name!r} must be a boolean, got {v!r:.40}")
    return v


def _bytes(name: str, v: Any) -> bytes:
    if type(v) is not bytes:
        raise MessageDecodeError(f"field {name!r} must be bytes, got {type(v).__name__}")
    return v


def _entries(name: str, v: Any) -> tuple[Entry, ...]:
    if type(v) is not list:
        raise MessageDecodeError(f"field {name!r} must be an array of entries")
    out = []
    prev: int | None = None
    for i, e in enumerate(v):
        if type(e) is not list or len(e) != 4:
            raise MessageDecodeError(f"entry {i} must be [index, term, kind, data]")
        index = _uint(f"{name}[{i}].index", e[0])
        term = _uint(f"{name}[{i}].term", e[1])
        kind = _uint(f"{name}[{i}].kind", e[2])
        data = _bytes(f"{name}[{i}].data", e[3])
        if kind not in _ENTRY_KINDS:
            raise MessageDecodeError(f"entry {i} has unknown kind {kind}")
        if prev is not None and index != prev + 1:
            raise MessageDecodeError(f"entries must have consecutive indexes (entry {i})")
        prev = index
        out.append(Entry(index, term, kind, data))
    return tuple(out)


def _optstr(name: str, v: Any) -> str:
    if type(v) is not str:
        raise MessageDecodeError(f"field {name!r} must be a string, got {v!r:.40}")
    return v


def _voters(name: str, v: Any) -> tuple[str, ...]:
    if type(v) is not list:
        raise MessageDecodeError(f"field {name!r} must be an array of voter ids")
    return tuple(_str(f"{name}[{i}]", x) for i, x in enumerate(v))


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "src": _str,
    "term": _uint,
    "last_log_index": _uint,
    "last_log_term": _uint,
    "pre_vote": _bool,
    "transfer": _bool,
    "granted": _bool,
    "prev_index": _uint,
    "prev_term": _uint,
    "entries": _entries,
    "leader_commit": _uint,
    "seq": _uint,
    "success": _bool,
    "match_index": _uint,
    "hint": _uint,
    "last_index": _uint,
    "last_term": _uint,
    "voters": _voters,
    "offset": _uint,
    "data": _bytes,
    "done": _bool,
    "next_offset": _uint,
    "leader": _optstr,
}


def _ok_uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _U64


def _fast_append_response(obj: list[Any]) -> AppendEntriesResponse | None:
    """The leader's most frequent message, when every field is valid (as the checks of the
    generic path below would find it); None sends it through the generic path."""
    _, src, term, success, match_index, hint, seq = obj
    if (type(src) is str and src and _ok_uint(term) and type(success) is bool
            and _ok_uint(match_index) and _ok_uint(hint) and _ok_uint(seq)):
        return AppendEntriesResponse(src, term, success, match_index, hint, seq)
    return None


def decode(data: bytes) -> Message:
    """Decode one message; raise ``MessageDecodeError`` saying what is wrong with the bytes."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:
        raise MessageDecodeError(f"raft message is not valid msgpack: {e}") from None
    if type(obj) is not list or not obj:
        raise MessageDecodeError("raft message must be a non-empty msgpack array")
    code = obj[0]
    if code == 4 and type(code) is int and len(obj) == 7:
        fast = _fast_append_response(obj)
        if fast is not None:
            return fast
    cls = _CLASSES.get(code) if type(code) is int else None
    if cls is None:
        raise MessageDecodeError(f"unknown raft message type {code!r:.20}")
    fields: tuple[str, ...] = cls.FIELDS
    optional: int = getattr(cls, "OPTIONAL", 0)
    if not len(fields) - optional <= len(obj) - 1 <= len(fields):
        raise MessageDecodeError(
            f"{cls.__name__} must have {len(fields)} fields, got {len(obj) - 1}"
        )
    values = {}
    for name, v in zip(fields, obj[1:], strict=False):
        try:
            values[name] = _CHECKS[name](name, v)
        except MessageDecodeError as e:
            raise MessageDecodeError(f"{cls.__name__}: {e}") from None
    msg: Message = cls(**values)
    if (
        isinstance(msg, AppendEntries)
        and msg.entries
        and msg.entries[0].index != msg.prev_index + 1
    ):
        raise MessageDecodeError("AppendEntries: first entry index must be prev_index + 1")
    return msg
