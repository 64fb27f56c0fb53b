# -*- test-case-name: tests.unit.snapshot.test_snapshot_stream -*-
"""The ``consul/rpc-snapshot`` stream (RPC type byte 5), sans-IO.

Request: one msgpack map ``{Datacenter, Token, AllowStale, Op}`` (Op 0 save, 1 restore), then the
archive (restore only), then the client's half-close. Response: one msgpack map ``{Error, Index,
LastContact, KnownLeader, ConsistencyLevel}``, then the archive (a successful save only) until the
server closes. Maps use msgpack's old raw strings, as the reference's codec writes them.

The end of a restore's archive is known without the half-close too: it is one gzip member, so
:class:`RequestReader` stops at the end of that member (a TLS tunnel through a mesh gateway
cannot half-close). Bounds: the request header is at most ``MAX_HEADER`` bytes, the archive at
most ``max_archive`` bytes compressed and ``max_uncompressed`` bytes once inflated.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack

from wanfedtx.packing import DECODE_ERRORS

OP_SAVE = 0
OP_RESTORE = 1
MAX_HEADER = 64 * 1024
_INFLATE_STEP = 256 * 1024


class StreamError(Exception):
    """The peer's stream is not a snapshot request/response; the message says why."""


def _pack(value: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=False)
    return out


def encode_request(header: dict[str, Any], archive: bytes = b"") -> bytes:
    return _pack(header) + archive


def encode_response(reply: dict[str, Any], archive: bytes = b"") -> bytes:
    return _pack(reply) + archive


def response_header(error: str = "", index: int = 0, last_contact: float = 0.0,
                    known_leader: bool = False, consistency: str = "") -> dict[str, Any]:
    """The reply map (``SnapshotResponse``: Error and the flattened QueryMeta)."""
    return {"Error": error, "Index": index, "LastContact": int(last_contact * 1e9),
            "KnownLeader": known_leader, "ConsistencyLevel": consistency}


class _HeaderReader:
    """Reads one msgpack map from the front of a stream, never past it."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._buf = bytearray()
        self.header: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        """Take bytes; returns those past the header once it is complete."""
        if self.header is not None:
            return data
        self._buf += data
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_HEADER)
        try:
            unpacker.feed(bytes(self._buf[:MAX_HEADER]))
            value = unpacker.unpack()
        except msgpack.OutOfData:
            if len(self._buf) >= MAX_HEADER:
                raise StreamError(f"{self._what} is larger than {MAX_HEADER} bytes") from None
            return b""
        except (*DECODE_ERRORS, msgpack.BufferFull) as exc:
            raise StreamError(f"failed to decode {self._what}: {exc}") from None
        if not isinstance(value, dict):
            raise StreamError(f"failed to decode {self._what}: not a map")
        self.header = value
        rest = bytes(self._buf[unpacker.tell():])
        self._buf = bytearray()
        return rest


def _field(header: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = header.get(name, default)
    if value is None:
        return default
    if kind is int and isinstance(value, bool):
        raise StreamError(f"failed to decode request: {name} is not a number")
    if not isinstance(value, kind):
        raise StreamError(f"failed to decode request: {name} has the wrong type")
    return value


class RequestReader:
    """The server's side: the request header, then (restore) the archive up to its gzip end."""

    def __init__(self, max_archive: int, max_uncompressed: int) -> None:
        self._header = _HeaderReader("request")
        self.max_archive = max_archive
        self.max_uncompressed = max_uncompressed
        self.archive = bytearray()
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._inflated = 0
        self.done = False
        self.datacenter = ""
        self.token = ""
        self.allow_stale = False
        self.op = OP_SAVE

    @property
    def header_seen(self) -> bool:
        return self._header.header is not None

    def feed(self, data: bytes) -> None:
        """Take bytes from the client; raises StreamError on bad input. ``done`` turns True
        once the request is complete (bytes after that are ignored)."""
        if self.done:
            return
        if not self.header_seen:
            data = self._header.feed(data)
            if self._header.header is None:
                return
            self._parse(self._header.header)
            if self.op == OP_SAVE:
                self.done = True
                return
        if data:
            self._archive_bytes(data)

    def _parse(self, h: dict[str, Any]) -> None:
        self.datacenter = _field(h, "Datacenter", str, "")
        self.token = _field(h, "Token", str, "")
        self.allow_stale = _field(h, "AllowStale", bool, False)
        op = _field(h, "Op", int, OP_SAVE)
        if op not in (OP_SAVE, OP_RESTORE):
            raise StreamError(f"unrecognized snapshot op {op}")
        self.op = op

    def _archive_bytes(self, data: bytes) -> None:
        if len(self.archive) + len(data) > self.max_archive:
            raise StreamError(f"snapshot archive is larger than {self.max_archive} bytes")
        start = len(self.archive)
        self.archive += data
        d = self._inflate
        try:
            out = d.decompress(data, _INFLATE_STEP)
            self._count(len(out))
            while d.unconsumed_tail and not d.eof:
                out = d.decompress(d.unconsumed_tail, _INFLATE_STEP)
                self._count(len(out))
        except zlib.error as exc:
            raise StreamError(f"failed to decompress snapshot: {exc}") from None
        if d.eof:
            # the archive ends with its gzip member; anything after it is not ours to read
            end = start + len(data) - len(d.unused_data)
            del self.archive[end:]
            self.done = True

    def _count(self, n: int) -> None:
        self._inflated += n
        if self._inflated > self.max_uncompressed:
            raise StreamError(
                f"snapshot archive is larger than {self.max_uncompressed} bytes uncompressed")

    def end_of_input(self) -> None:
        """The client half-closed: the request is complete, or truncated (StreamError)."""
        if self.done:
            return
        if not self.header_seen:
            raise StreamError("stream ended before the request header was complete")
        raise StreamError("stream ended before the snapshot archive was complete")


class ResponseReader:
    """The client's side: the reply header, then the archive until the server closes."""

    def __init__(self, max_archive: int) -> None:
        self._header = _HeaderReader("response")
        self.max_archive = max_archive
        self.archive = bytearray()

    @property
    def reply(self) -> dict[str, Any] | None:
        return self._header.header

    def feed(self, data: bytes) -> None:
        if self._header.header is None:
            data = self._header.feed(data)
        if data:
            if len(self.archive) + len(data) > self.max_archive:
                raise StreamError(f"snapshot archive is larger than {self.max_archive} bytes")
            self.archive += data

    def finish(self) -> tuple[dict[str, Any], bytes]:
        """At the server's close: the reply and the archive (StreamError if truncated)."""
        reply = self._header.header
        if reply is None:
            raise StreamError("stream ended before the response header was complete")
        return reply, bytes(self.archive)
