"""Sans-IO framing of tunnelled gossip packets: a 4-byte big-endian length, then the payload.

``encode_frame`` builds one frame. ``FrameDecoder.feed`` takes bytes as they arrive and returns the
complete payloads; it raises ``FrameTooLarge`` as soon as a header announces more than the limit
(the receiver then closes the connection), carrying the payloads completed before it in
``frames``. ``awaiting_header`` tells the Twisted side when the "wait for the next frame"
deadline applies: the reference sets it only around the header read, never while a frame body is
arriving.
"""

from __future__ import annotations

import struct

from .constants import FRAME_HEADER_SIZE, GOSSIP_PACKET_MAX_BYTE_SIZE
from .errors import FrameError, FrameTooLarge

_U32 = struct.Struct(">I")


def encode_frame(payload: bytes, limit: int = GOSSIP_PACKET_MAX_BYTE_SIZE) -> bytes:
    """``len(payload)`` as a big-endian uint32 followed by ``payload``."""
    if len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    return _U32.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder of length-prefixed frames (at most ``limit`` bytes each)."""

    def __init__(self, limit: int = GOSSIP_PACKET_MAX_BYTE_SIZE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._need: int | None = None  # body length once the header is read
        self.failed = False

    @property
    def awaiting_header(self) -> bool:
        """True between frames (no header, or part of one, read yet)."""
        return self._need is None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every payload completed by it, in order."""
        if self.failed:
            raise FrameError("the frame decoder failed earlier; close the connection")
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < FRAME_HEADER_SIZE:
                    return out
                (size,) = _U32.unpack_from(self._buf)
                if size > self.limit:
                    self.failed = True
                    err = FrameTooLarge(size, self.limit)
                    err.frames = out
                    raise err
                del self._buf[:FRAME_HEADER_SIZE]
                self._need = size
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None
