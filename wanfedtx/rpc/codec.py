"""Sans-IO codec of RPC frames (see docs/protocols.md for the byte layout).

A frame is a 4-byte big-endian length N followed by N bytes of msgpack: a request is the array
``[0, seq, "Service.Method", args]`` and a response ``[1, seq, error, reply]`` where ``error`` is
nil or a string. ``FrameDecoder.receive_data`` returns complete messages and raises
``FrameError`` on anything malformed or larger than the maximum frame size; the caller then
closes the connection.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import msgpack

from wanfedtx.framebudget import FrameBudget, HeldBytes
from wanfedtx.rpc.constants import DEFAULT_MAX_FRAME_SIZE
from wanfedtx.rpc.errors import FrameError

KIND_REQUEST = 0
KIND_RESPONSE = 1
MAX_SEQ = 2**64 - 1

_LEN = struct.Struct(">I")


@attrs.frozen
class Request:
    seq: int
    method: str
    args: Any


@attrs.frozen
class Response:
    seq: int
    error: str | None
    reply: Any


Message = Request | Response


def _frame(body: bytes, max_frame_size: int) -> bytes:
    if len(body) > max_frame_size:
        raise FrameError(
            f"RPC frame of {len(body)} bytes exceeds the maximum of {max_frame_size} bytes; "
            "send smaller arguments or raise the limit on both sides"
        )
    return _LEN.pack(len(body)) + body


def encode_request(
    seq: int, method: str, args: Any, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """One request frame. Raises ``TypeError`` for arguments msgpack cannot encode."""
    return _frame(
        msgpack.packb([KIND_REQUEST, seq, method, args], use_bin_type=True), max_frame_size
    )


def encode_response(
    seq: int, error: str | None, reply: Any, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """One response frame. Raises ``TypeError`` for a reply msgpack cannot encode."""
    return _frame(
        msgpack.packb([KIND_RESPONSE, seq, error, reply], use_bin_type=True), max_frame_size
    )


def decode_body(body: bytes) -> Message:
    """Decode one frame body (without its length prefix)."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise FrameError(f"RPC frame is not valid msgpack: {e}") from None
    if not isinstance(obj, list) or len(obj) != 4:
        raise FrameError("RPC frame must be a msgpack array of 4 elements")
    kind, seq, third, fourth = obj
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise FrameError("RPC frame sequence number must be an unsigned 64-bit integer")
    if kind == KIND_REQUEST and type(kind) is int:
        if not isinstance(third, str):
            raise FrameError("RPC request method must be a string")
        return Request(seq, third, fourth)
    if kind == KIND_RESPONSE and type(kind) is int:
        if third is not None and not isinstance(third, str):
            raise FrameError("RPC response error must be nil or a string")
        return Response(seq, third, fourth)
    raise FrameError(f"RPC frame kind must be 0 (request) or 1 (response), not {kind!r}")


class FrameDecoder:
    """Reassembles frames from a byte stream.

    With a ``budget`` (one per port, shared by its connections), the bytes of the unfinished
    frame are reserved in it; a frame the budget cannot hold fails with ``FrameError``.
    ``close`` gives the reservation back."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 budget: FrameBudget | None = None) -> None:
        self._max = max_frame_size
        self._buf = bytearray()
        self._failed = False
        self._held = HeldBytes(budget)

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[Message]:
        """Take bytes; return the complete messages they finish, in order.

        Raises ``FrameError`` (and refuses further input) on a malformed or oversized frame;
        its ``messages`` attribute holds the complete messages that came before it."""
        if self._failed:
            raise FrameError("RPC stream already failed; close the connection")
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if size > self._max:
                    raise FrameError(
                        f"RPC frame of {size} bytes exceeds the maximum of {self._max} bytes"
                    )
                end = pos + 4 + size
                if end > n:
                    break
                out.append(decode_body(bytes(buf[pos + 4 : end])))
                pos = end
        except FrameError as e:
            self._failed = True
            buf.clear()
            self._held.release_all()
            e.messages = out  # the complete messages before the bad frame
            raise
        if pos:
            del buf[:pos]
        if not self._held.hold(len(buf)):
            self._failed = True
            budget = self._held.budget
            used, limit = (budget.used, budget.limit) if budget is not None else (0, 0)
            buf.clear()
            self._held.release_all()
            over = FrameError(
                f"a partial RPC frame of {n - pos} bytes does not fit the budget for unfinished "
                f"frames ({used} of {limit} bytes in use)")
            over.messages = out
            raise over
        return out

    def close(self) -> None:
        """Drop the buffer and give its bytes back to the budget (connection closed)."""
        self._buf.clear()
        self._held.release_all()
