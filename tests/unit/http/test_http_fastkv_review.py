"""Review fixes of the KV fast path: reading resumes after a large answer followed by a
pipelined write (send buffer full while serving), a body arriving in small pieces is parsed
once, a handler cancelled while the client is still there is answered, taking the connection
back reads twisted.web's private attributes defensively, and the transport is dropped after a
hand-over."""

from __future__ import annotations

from typing import Any

import pytest
from test_http_fastkv_diff import Held, Side
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wanfedtx.http import fastkv, fastparse
from wanfedtx.http.channel import APIChannel
from wanfedtx.http.fastkv import FastChannel

ADDR = IPv4Address("TCP", "127.0.0.1", 40000)
GET = b"GET /v1/kv/k HTTP/1.1\r\n\r\n"
SEND_BUFFER = 0x10000


class SendBufferTransport(StringTransport):
    """A StringTransport with a 64 KiB send buffer: past it, the registered producer is
    paused (as a TCP transport does) until ``drain``."""

    def __init__(self) -> None:
        super().__init__(peerAddress=ADDR)
        self.unsent = 0
        self.full = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self.unsent += len(data)
        if self.unsent > SEND_BUFFER and not self.full and self.producer is not None:
            self.full = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.unsent = 0
        if self.full and self.producer is not None:
            self.full = False
            self.producer.resumeProducing()


class WritesHeld(Held):
    """Holds the answers of writes (``KVS.Apply``) only, while ``hold_writes``."""

    hold_writes = False

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.hold = self.hold_writes and method == "KVS.Apply"
        return super().__call__(method, args)


def _conn(kv_limit: int = 1 << 20) -> tuple[Side, Any, StringTransport]:
    side = Side(True, False, kv_limit=kv_limit)
    proto: Any = side.site.buildProtocol(ADDR)
    assert isinstance(proto, FastChannel)
    transport = SendBufferTransport()
    proto.makeConnection(transport)
    return side, proto, transport


def _put(key: str, body: bytes) -> bytes:
    return b"PUT /v1/kv/%s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
        key.encode(), len(body), body)


def test_reading_resumes_after_a_large_answer_and_a_pipelined_write() -> None:
    side, proto, tr = _conn()
    held = WritesHeld(side.held.rpc)
    side.ctx.rpc = held  # type: ignore[method-assign]
    big = b"v" * (SEND_BUFFER + 1000)
    proto.dataReceived(_put("big", big))
    assert tr.value().startswith(b"HTTP/1.1 200 OK")
    tr.clear()
    tr.drain()
    held.hold_writes = True
    proto.dataReceived(b"GET /v1/kv/big?raw HTTP/1.1\r\n\r\n" + _put("k", b"x"))
    assert tr.value().endswith(big)  # the large answer: over the send buffer
    assert tr.producerState == "paused"  # the send buffer is full: reading paused
    assert len(held.held) == 1  # the PUT waits for its commit
    tr.drain()  # the send buffer drains while the PUT is still pending
    held.release()
    assert tr.value().endswith(b"true")
    assert tr.producerState == "producing"
    tr.clear()
    proto.dataReceived(GET)
    assert tr.value().startswith(b"HTTP/1.1 200 OK") and b'"Key":"k"' in tr.value()


def test_body_in_small_pieces_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    for name in ("parse", "parse_head"):  # whichever the channel calls
        real = getattr(fastparse, name, None)
        if real is None:
            continue

        def counting(buf: bytes, cap: int, real: Any = real) -> Any:
            calls.append(len(buf))
            return real(buf, cap)

        monkeypatch.setattr(fastkv, name, counting, raising=False)
    _, proto, tr = _conn()
    body = bytes(range(256)) * 2048  # 512 KiB
    data = _put("k", body)
    for i in range(0, len(data), 1024):
        proto.dataReceived(data[i:i + 1024])
    assert tr.value().startswith(b"HTTP/1.1 200 OK") and tr.value().endswith(b"true")
    assert len(calls) == 1
    assert max(calls) <= fastparse.MAX_HEAD + 5
    tr.clear()
    proto.dataReceived(b"GET /v1/kv/k?raw HTTP/1.1\r\n\r\n")
    assert tr.value().endswith(b"\r\n\r\n" + body)


@pytest.mark.allow_logged_errors
def test_handler_cancelled_while_the_client_is_there_is_answered(
    logged: list[dict[str, Any]],
) -> None:
    side, proto, tr = _conn()
    side.held.hold = True
    proto.dataReceived(_put("k", b"x"))
    [(_, outer)] = side.held.held
    side.held.held.clear()
    outer.cancel()  # not a disconnect
    out = tr.value()
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert out.endswith(b"\r\n\r\ninternal error")
    assert not proto.serving and not tr.disconnecting
    assert any("log_failure" in e and e.get("method") == "PUT" for e in logged)
    side.held.hold = False
    tr.clear()
    proto.dataReceived(GET)  # the connection goes on
    assert tr.value().startswith(b"HTTP/1.1 200 OK")


def test_client_gone_stays_silent() -> None:
    side, proto, tr = _conn()
    side.held.hold = True
    proto.dataReceived(_put("k", b"x"))
    proto.connectionLost(Failure(ConnectionDone()))
    assert side.held.held[0][1].called
    assert tr.value() == b""


def _handed_over() -> tuple[Any, StringTransport, APIChannel]:
    _, proto, tr = _conn()
    proto.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\n\r\n")
    channel = proto.inner._channel
    assert isinstance(channel, APIChannel)
    assert tr.value().startswith(b"HTTP/1.1 ")
    tr.clear()
    return proto, tr, channel


def test_taken_back_between_requests() -> None:
    proto, tr, _ = _handed_over()
    proto.dataReceived(GET)
    assert proto.inner is None
    assert tr.value().startswith(b"HTTP/1.1 404 Not Found")


@pytest.mark.parametrize("name", ["_busyReceiving", "_dataBuffer", "_handlingRequest"])
def test_missing_private_attribute_keeps_the_channel(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proto, _, channel = _handed_over()
    assert fastkv.channel_idle(channel)
    if name in vars(channel):
        monkeypatch.delattr(channel, name)
    for klass in type(channel).__mro__:
        if name in vars(klass):
            monkeypatch.delattr(klass, name)
    assert not hasattr(channel, name)  # as after a Twisted upgrade
    assert not fastkv.channel_idle(channel)
    assert not proto._take_back(GET)  # no AttributeError: the channel keeps the connection
    assert proto.inner is not None


def test_transport_dropped_after_a_hand_over() -> None:
    proto, _, _ = _handed_over()
    proto.connectionLost(Failure(ConnectionDone()))
    assert proto.transport is None
