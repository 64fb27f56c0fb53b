# -*- test-case-name: tests.unit.rpc.test_rpc_codec,tests.unit.rpc.test_rpc_frame_budget -*-
"""Sans-IO codec of RPC frames (see docs/protocols.md for the byte layout).

A frame is a 4-byte big-endian length N followed by N bytes of msgpack: a request is the array
``[0, seq, "Service.Method", args]`` and a response ``[1, seq, error, reply]`` where ``error`` is
nil or a string. ``FrameDecoder.feed`` returns complete messages; anything malformed or larger
than the maximum frame size sets its ``failed`` to a ``FrameError`` (the shape of
``wanfedtx.framing``), and the caller then closes the connection.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from wanfedtx.framebudget import FrameBudget
from wanfedtx.framing import LengthPrefixedDecoder, length_prefixed
from wanfedtx.packing import pack
from wanfedtx.rpc.constants import DEFAULT_MAX_FRAME_SIZE
from wanfedtx.rpc.errors import FrameError

KIND_REQUEST = 0
KIND_RESPONSE = 1
MAX_SEQ = 2**64 - 1



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
    return length_prefixed(body)


def encode_request(
    seq: int, method: str, args: Any, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """One request frame. Raises ``TypeError`` for arguments msgpack cannot encode."""
    return _frame(
        pack([KIND_REQUEST, seq, method, args]), max_frame_size
    )


def encode_response(
    seq: int, error: str | None, reply: Any, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """One response frame. Raises ``TypeError`` for a reply msgpack cannot encode."""
    return _frame(
        pack([KIND_RESPONSE, seq, error, reply]), max_frame_size
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


class FrameDecoder(LengthPrefixedDecoder[Message]):
    """Reassembles RPC messages from a byte stream (``wanfedtx.framing``: ``feed`` returns the
    complete messages; a malformed, oversized or over-budget frame sets ``failed`` to a
    ``FrameError``)."""

    errors = (FrameError,)

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 budget: FrameBudget | None = None) -> None:
        super().__init__(max_frame_size, budget)

    def decode(self, body: bytes) -> Message:
        return decode_body(body)

    def bad_length(self, size: int) -> FrameError:
        return FrameError(
            f"RPC frame of {size} bytes exceeds the maximum of {self.max_frame} bytes")

    def over_budget(self, partial: int, budget: FrameBudget) -> FrameError:
        return FrameError(
            f"a partial RPC frame of {partial} bytes does not fit the budget for unfinished "
            f"frames ({budget.used} of {budget.limit} bytes in use)")
