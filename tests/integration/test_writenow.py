"""``write_now`` over real TCP on 127.0.0.1: bytes leave at once on an idle connection (the
reactor never watches it for writability), mixed with ``write`` and with messages larger than
the socket's buffer the receiver gets every byte in order, and a closing connection is left to
Twisted's own ``write``; ``push_out`` sends what ``write`` queued."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from wanfedtx.writenow import push_out, write_now

pytestmark = pytest.mark.integration


class Collect(Protocol):
    def __init__(self, expected: int, done: Deferred[bytes]) -> None:
        self.expected = expected
        self.done = done
        self.got = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.got += data
        if len(self.got) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.got))


async def _pair(reactor: Any, expected: int) -> tuple[Any, Deferred[bytes], Any]:
    done: Deferred[bytes] = Deferred()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: Collect(expected, done)))
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(Protocol))
    return client.transport, done, port


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_sends_at_once(reactor: Any) -> None:
    transport, done, port = await _pair(reactor, 5)
    try:
        write_now(transport, b"hello")
        # sent inside the call: nothing buffered, the reactor not asked to watch for writing
        assert transport._tempDataLen == 0 and transport.offset == len(transport.dataBuffer)
        assert transport not in reactor.getWriters()
        assert await done == b"hello"
    finally:
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mixed_with_write_and_a_full_socket_every_byte_arrives_in_order(
    reactor: Any,
) -> None:
    rng = random.Random(7)
    chunks = []
    for i in range(400):
        size = rng.choice([1, 100, 5000, 1 << 20]) if i % 50 else 4 << 20
        chunks.append(bytes([i % 251]) * size)
    expected = b"".join(chunks)
    transport, done, port = await _pair(reactor, len(expected))
    try:
        for i, chunk in enumerate(chunks):
            if i % 3:
                write_now(transport, chunk)
            else:
                transport.write(chunk)
        assert await done == expected
    finally:
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_closing_connection_is_left_to_write(reactor: Any) -> None:
    transport, done, port = await _pair(reactor, 7)
    try:
        write_now(transport, b"abc")
        transport.loseConnection()
        write_now(transport, b"late")  # not sent past the close: buffered, as write() does
        assert transport._tempDataLen == 4
        assert await done == b"abclate"
    finally:
        await port.stopListening()


class Lost(Protocol):
    def __init__(self, lost: Deferred[bytes]) -> None:
        self.lost = lost
        self.got = b""

    def dataReceived(self, data: bytes) -> None:
        self.got += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(self.got)


@pytest_twisted.ensureDeferred
async def test_an_aborted_connection_sends_nothing_more(reactor: Any) -> None:
    lost: Deferred[bytes] = Deferred()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: Lost(lost)))
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(Protocol))
    try:
        client.transport.abortConnection()
        write_now(client.transport, b"after abort")  # write() drops it after an abort
        assert await lost == b""
    finally:
        await port.stopListening()


def test_only_an_idle_plain_tcp_connection_is_written_directly() -> None:
    sent: list[bytes] = []

    class FakeTCP(tcp.Connection):
        def __init__(self) -> None:  # no socket: only the attributes write_now reads
            self.connected = True
            self.disconnecting = False
            self._writeDisconnected = False
            self.producer = None
            self.streamingProducer = False
            self.dataBuffer = b""
            self.offset = 0
            self._tempDataBuffer: list[bytes] = []
            self._tempDataLen = 0

        def writeSomeData(self, data: bytes) -> int:
            sent.append(bytes(data))
            return len(data)

        def write(self, data: bytes) -> None:
            self._tempDataBuffer.append(data)
            self._tempDataLen += len(data)

    plain = FakeTCP()
    write_now(plain, b"a")
    assert sent == [b"a"] and plain._tempDataLen == 0
    for setup in (
        lambda t: setattr(t, "TLS", True),  # startTLS(): write() encrypts
        lambda t: setattr(t, "_aborting", True),
        lambda t: setattr(t, "disconnecting", True),
        lambda t: setattr(t, "_writeDisconnected", True),
        lambda t: (setattr(t, "producer", object()), setattr(t, "streamingProducer", False)),
        lambda t: t.write(b"queued"),
    ):
        t = FakeTCP()
        setup(t)
        before = t._tempDataLen
        sent.clear()
        write_now(t, b"b")
        assert sent == [] and t._tempDataLen == before + 1
    streaming = FakeTCP()
    streaming.producer, streaming.streamingProducer = object(), True
    write_now(streaming, b"c")
    assert sent == [b"c"]


@pytest_twisted.ensureDeferred
async def test_push_out_sends_what_write_queued_and_leaves_a_closing_connection(
    reactor: Any,
) -> None:
    transport, done, port = await _pair(reactor, 7)
    try:
        transport.write(b"abc")  # queued until the reactor finds the socket writable
        push_out(transport)
        assert transport._tempDataLen == 0 and transport.offset == len(transport.dataBuffer)
        transport.loseConnection()
        transport.write(b"late")
        push_out(transport)  # closing: left to the reactor, as write_now does
        assert transport._tempDataLen == 4
        assert await done == b"abclate"
    finally:
        await port.stopListening()
    push_out(object())  # neither TLS nor TCP: nothing to do
