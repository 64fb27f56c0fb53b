# -*- test-case-name: tests.unit.wanfed.test_wanfed_framing,tests.unit.wanfed.test_wanfed_wiring -*-
"""Sans-IO framing of tunnelled gossip packets: a 4-byte big-endian length, then the payload.

``encode_frame`` builds one frame. ``FrameDecoder.feed`` takes bytes as they arrive and returns the
complete payloads (the shape of ``wanfedtx.framing``); a header announcing more than the limit
sets ``failed`` to ``FrameTooLarge`` at once (the receiver then closes the connection), and
nothing is decoded after it. ``awaiting_header`` tells the Twisted side when the "wait for the
next frame" deadline applies: the reference sets it only around the header read, never while a
frame body is arriving.
"""

from __future__ import annotations

from wanfedtx.framing import LengthPrefixedDecoder, length_prefixed

from .constants import GOSSIP_PACKET_MAX_BYTE_SIZE
from .errors import FrameError, FrameTooLarge


def encode_frame(payload: bytes, limit: int = GOSSIP_PACKET_MAX_BYTE_SIZE) -> bytes:
    """``len(payload)`` as a big-endian uint32 followed by ``payload``."""
    if len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    return length_prefixed(payload)


class FrameDecoder(LengthPrefixedDecoder[bytes]):
    """Incremental decoder of length-prefixed frames (at most ``limit`` bytes each)."""

    errors = (FrameError,)

    def __init__(self, limit: int = GOSSIP_PACKET_MAX_BYTE_SIZE) -> None:
        super().__init__(limit)

    @property
    def limit(self) -> int:
        return self.max_frame

    def decode(self, body: bytes) -> bytes:
        return body

    def bad_length(self, size: int) -> FrameError:
        return FrameTooLarge(size, self.max_frame)
