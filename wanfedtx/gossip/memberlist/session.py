# -*- test-case-name: tests.unit.gossip -*-
"""One stream exchange (push/pull, TCP ping, reliable user message) as an ``IStreamSink``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall
from zope.interface import implementer

from wanfedtx.hostport import format_host

from .. import wire
from ..errors import WireError
from ..interfaces import IStreamSink, IStreamWriter

if TYPE_CHECKING:
    from .base import MemberlistBase

# ------------------------------------------------------------------------------------------
# Stream sessions


@implementer(IStreamSink)
class _StreamSession:
    """One stream exchange; ``outbound`` sessions send first, inbound ones read first."""

    def __init__(
        self,
        ml: MemberlistBase,
        first: bytes | None = None,
        on_message: Callable[[wire.StreamMessage | None, str | None], None] | None = None,
        expect_reply: bool = False,
    ) -> None:
        self.ml = ml
        self.first = first
        self.on_message = on_message
        self.expect_reply = expect_reply
        self.writer: IStreamWriter | None = None
        self.reader = ml._stream_reader()
        self.done = False
        self.timeout: IDelayedCall | None = None

    def connection_made(self, writer: IStreamWriter) -> None:
        self.writer = writer
        self.timeout = self.ml.clock.callLater(self.ml.config.tcp_timeout, self._timed_out)
        if self.first is not None:
            writer.write(self.first)
            if not self.expect_reply:
                self._finish(None, None)
                writer.close()

    def _timed_out(self) -> None:
        self.timeout = None
        self._finish(None, "i/o timeout")
        if self.writer is not None:
            self.writer.close()

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            msg = self.reader.feed(data)
        except WireError as exc:
            self.ml.peer_log.warn(
                "stream",
                "memberlist: failed to receive: {error} from={src}",
                error=str(exc),
                src=_writer_peer(self.writer),
            )
            if self.first is None and self.writer is not None:
                # Responder: tell the peer what was wrong, like memberlist's errResp.
                self.writer.write(self.ml._wrap_stream(wire.ErrResp(str(exc)).encode()))
            self._finish(None, str(exc))
            if self.writer is not None:
                self.writer.close()
            return
        if msg is not None:
            self._finish(msg, None)

    def connection_lost(self, reason: str | None) -> None:
        self._finish(None, reason or "connection closed before a whole message arrived")

    def _finish(self, msg: wire.StreamMessage | None, err: str | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None
        if self.on_message is not None:
            cb, self.on_message = self.on_message, None
            cb(msg, err)
        elif msg is not None:
            self.ml._handle_inbound_stream(msg, self)


def _writer_peer(writer: IStreamWriter | None) -> str:
    """``host:port`` of the peer behind a stream writer (a Twisted protocol), or ``?``."""
    try:
        peer = writer.transport.getPeer()  # type: ignore[union-attr]
        return f"{format_host(peer.host)}:{peer.port}"
    except Exception:
        return "?"
