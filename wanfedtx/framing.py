# -*- test-case-name: tests.unit.test_framing -*-
"""The one shape of a length-prefixed frame decoder: ``feed(bytes) -> frames``, errors as values.

The RPC (``rpc/codec.py``), raft (``raft/transport.py``) and tunnelled-gossip
(``wanfed/framing.py``) streams all frame a body with a 4-byte big-endian length. Each subclasses
``LengthPrefixedDecoder`` and supplies only what differs: how a body decodes and the error each
refusal becomes (each package keeps its own error types and messages).

``feed(data)`` never raises for bad input. It returns the frames completed before anything went
wrong; the first error is kept in ``failed`` (the caller handles the returned frames, then closes
the connection when ``failed`` is set), and every later ``feed`` returns ``[]``. A declared
length outside ``min_frame..max_frame`` fails at the header, before its body is buffered. With
a ``FrameBudget`` (shared by the connections of a port) the bytes of the unfinished frame are
reserved in it; a frame the budget cannot hold fails. ``close`` gives the reservation back.
"""

from __future__ import annotations

import struct
from typing import Generic, TypeVar

from wanfedtx.framebudget import FrameBudget, HeldBytes

T = TypeVar("T")

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size


def length_prefixed(body: bytes) -> bytes:
    """``len(body)`` as a big-endian uint32, then ``body`` (the caller checks the size)."""
    return HEADER.pack(len(body)) + body


class LengthPrefixedDecoder(Generic[T]):
    """Reassembles 4-byte-length-prefixed frames; see the module docstring.

    Subclasses set ``errors`` (the exception types that mean "bad input": they end the stream)
    and implement ``decode``, ``bad_length`` and ``over_budget``."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self, max_frame: int, budget: FrameBudget | None = None, *,
                 min_frame: int = 0) -> None:
        self.max_frame = max_frame
        self.min_frame = min_frame
        self.failed: Exception | None = None
        self.completed = 0  # frames whose bytes all arrived (decoded or not)
        self._buf = bytearray()
        self._held = HeldBytes(budget)

    @property
    def budget(self) -> FrameBudget | None:
        return self._held.budget

    @property
    def buffered(self) -> int:
        """Bytes of the frame being received, its header included (0 between frames)."""
        return len(self._buf)

    @property
    def awaiting_header(self) -> bool:
        """True until the next frame's whole length prefix has arrived."""
        return len(self._buf) < HEADER_SIZE

    def decode(self, body: bytes) -> T:
        """One frame body -> a frame; raises one of ``errors`` if it is malformed."""
        raise NotImplementedError

    def bad_length(self, size: int) -> Exception:
        """The error for a declared length outside ``min_frame..max_frame``."""
        raise NotImplementedError

    def over_budget(self, partial: int, budget: FrameBudget) -> Exception:
        """The error for a partial frame of ``partial`` bytes that ``budget`` cannot hold."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[T]:
        """Take bytes; return the frames they complete, in order (see the module docstring)."""
        if self.failed is not None:
            return []
        buf = self._buf
        buf += data
        out: list[T] = []
        pos = 0
        n = len(buf)
        try:
            while n - pos >= HEADER_SIZE:
                (size,) = HEADER.unpack_from(buf, pos)
                if size < self.min_frame or size > self.max_frame:
                    raise self.bad_length(size)
                end = pos + HEADER_SIZE + size
                if end > n:
                    break
                body = bytes(buf[pos + HEADER_SIZE : end])
                pos = end
                self.completed += 1
                out.append(self.decode(body))
        except self.errors as e:
            self._fail(e)
            return out
        if pos:
            del buf[:pos]
        if not self._held.hold(len(buf)):
            budget = self._held.budget
            if budget is not None:
                self._fail(self.over_budget(len(buf), budget))
        return out

    def _fail(self, error: Exception) -> None:
        self.failed = error
        self.close()

    def close(self) -> None:
        """Drop the buffer and give its bytes back to the budget (connection closed)."""
        self._buf.clear()
        self._held.release_all()
