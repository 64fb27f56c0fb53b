"""The KV fast path's connection handling over a fake transport and clock: the header deadline
(from accept, then from each request's first byte; carried over when the connection is handed
to twisted.web), the idle timeout, one request at a time with pipelined ones buffered (reading
paused past 16 KiB), ``Connection: close``, a client that leaves while its write waits for the
commit, request logging, the hand-over for everything else and taking the connection back."""

from __future__ import annotations

from typing import Any

from test_http_fastkv_diff import Side
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wanfedtx import metrics
from wanfedtx.agent.httpserver import _TrackingSite
from wanfedtx.http.channel import APIChannel
from wanfedtx.http.fastkv import EAGER_READ, FastChannel
from wanfedtx.http.limits import HTTPLimits
from wanfedtx.http.parking import APIRequest

PUT = b"PUT /v1/kv/k HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
GET = b"GET /v1/kv/k HTTP/1.1\r\n\r\n"


class Conn:
    def __init__(self, timeout: float = 1.0, idle: float | None = None) -> None:
        self.side = Side(True, False)
        self.registry = metrics.Registry()
        site = _TrackingSite(
            self.side.site.resource, requestFactory=APIRequest, reactor=self.side.clock,
            http_limits=HTTPLimits(read_header_timeout=timeout, kv_max_value_size=64),
            registry=self.registry,
        )
        if idle is not None:
            site.timeout = idle
        self.logged: list[Any] = []
        site.log = self.logged.append  # type: ignore[method-assign]
        self.site = site
        self.clock = self.side.clock
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        self.proto: Any = site.buildProtocol(addr)
        assert isinstance(self.proto, FastChannel)
        self.tr = StringTransport(peerAddress=addr)
        self.proto.makeConnection(self.tr)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def refused(self, reason: str) -> float:
        return self.registry.counter("http.request.refused", "", ("reason",)).value(reason=reason)


def test_header_deadline_from_accept_on_the_fast_path() -> None:
    c = Conn()
    for byte in b"GET /v1/kv/k HTTP/1.1\r\n":
        if c.tr.disconnecting:
            break
        c.send(bytes([byte]))
        c.clock.advance(0.2)
    assert c.tr.disconnecting and c.clock.seconds() <= 1.2
    assert c.refused("header-timeout") == 1
    assert c.proto.inner is None


def test_header_deadline_carried_over_to_twisted_web() -> None:
    c = Conn()
    c.clock.advance(0.8)
    c.send(b"GET /v1/status/leader HTTP/1.1\r\n")  # not the fast path's: handed over
    assert isinstance(c.proto.inner._channel, APIChannel)
    c.send(b"Host: x\r\n")
    c.clock.advance(0.3)
    assert c.tr.disconnecting  # 1.0 s after accept, not 1.0 s after the hand-over
    assert c.refused("header-timeout") == 1


def test_served_and_idle_requests_are_not_cut_and_next_deadline_starts_at_first_byte() -> None:
    c = Conn()
    c.side.held.hold = True
    c.send(PUT)
    c.clock.advance(5)  # waiting for the commit: not under the header deadline
    assert not c.tr.disconnecting and c.tr.value() == b""
    c.side.held.release()
    assert c.tr.value().startswith(b"HTTP/1.1 200 OK")
    c.clock.advance(30)  # idle keep-alive
    assert not c.tr.disconnecting
    c.send(b"GET /v1/kv/k HTTP/1.1\r\n")
    c.clock.advance(0.9)
    assert not c.tr.disconnecting
    c.clock.advance(0.2)
    assert c.tr.disconnecting and c.refused("header-timeout") == 1


def test_pipelined_request_deadline_starts_when_the_one_before_is_answered() -> None:
    c = Conn()
    c.side.held.hold = True
    c.send(PUT + b"GET /v1/kv/k HTTP/1.1\r\n")  # the next request's head is incomplete
    c.clock.advance(20)  # the PUT waits for its commit: the GET's deadline has not started
    assert not c.tr.disconnecting
    c.side.held.release()
    assert c.tr.value().startswith(b"HTTP/1.1 200 OK")
    c.clock.advance(0.9)
    assert not c.tr.disconnecting
    c.clock.advance(0.2)
    assert c.tr.disconnecting and c.refused("header-timeout") == 1


def test_idle_timeout() -> None:
    c = Conn(timeout=0, idle=60)
    c.send(PUT)
    c.clock.advance(59)
    c.send(GET)
    c.clock.advance(59)
    assert not c.tr.disconnecting
    c.clock.advance(2)
    assert c.tr.disconnecting


def test_pipelined_requests_one_at_a_time_in_order() -> None:
    c = Conn()
    c.side.held.hold = True
    c.send(PUT + GET + b"DELETE /v1/kv/k HTTP/1.1\r\n\r\n")
    assert c.tr.value() == b""
    assert len(c.side.held.held) == 1  # only the first is being served
    c.side.held.release()
    out = c.tr.value()
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"true") < out.index(b'"Key":"k"')
    assert [a.code for a in c.logged] == [200, 200, 200]
    assert [a.method for a in c.logged] == [b"PUT", b"GET", b"DELETE"]


def test_reading_pauses_behind_a_request_being_served() -> None:
    c = Conn()
    c.side.held.hold = True
    c.send(PUT)
    c.send(GET * (EAGER_READ // len(GET) + 1))
    assert c.tr.producerState == "paused"
    c.side.held.release()
    assert c.tr.producerState == "producing"
    assert c.tr.value().count(b"HTTP/1.1 200 OK") == EAGER_READ // len(GET) + 2


def test_connection_close_and_http_10() -> None:
    c = Conn()
    c.send(b"GET /v1/kv/k HTTP/1.1\r\nConnection: close\r\n\r\n" + GET)
    assert c.tr.disconnecting
    assert c.tr.value().count(b"HTTP/1.1") == 1
    assert b"\r\nConnection: close\r\n" in c.tr.value()
    c = Conn()
    c.send(b"GET /v1/kv/k HTTP/1.0\r\n\r\n")
    assert c.tr.disconnecting and c.tr.value().startswith(b"HTTP/1.0 404 Not Found")
    assert b"Connection:" not in c.tr.value()


def test_client_gone_while_the_write_waits() -> None:
    c = Conn()
    c.side.held.hold = True
    c.send(PUT)
    [(_, outer)] = c.side.held.held
    c.proto.connectionLost(Failure(ConnectionDone()))
    assert outer.called  # cancelled, as Klein cancels the handler's Deferred
    c.side.held.release()
    assert c.tr.value() == b"" and c.logged == []
    assert c.site.per_client == {}


def test_everything_else_is_handed_over_and_the_connection_taken_back_between_requests(
) -> None:
    c = Conn()
    c.send(PUT + b"GET /v1/kv/?recurse HTTP/1.1\r\n\r\n" + GET)
    assert c.proto.inner is not None  # the GET after it was in the same buffer
    assert c.tr.value().count(b"HTTP/1.1 200 OK") == 3
    assert c.proto._channel is c.proto.inner._channel
    c.tr.clear()
    c.send(GET)  # the channel is between requests: back on the fast path
    assert c.proto.inner is None and c.tr.value().startswith(b"HTTP/1.1 200 OK")
    assert c.tr.producer is c.proto
    # the old channel's timers are gone: every timer left is the fast path's own
    calls = c.clock.getDelayedCalls()
    assert calls and all(getattr(dc.func, "__self__", None) is c.proto for dc in calls)


def test_not_taken_back_while_a_blocking_query_is_parked() -> None:
    c = Conn()
    c.send(PUT)
    c.send(b"GET /v1/kv/k?recurse&index=1&wait=1m HTTP/1.1\r\n\r\n")  # twisted.web's
    assert c.proto.inner is not None and c.tr.value().count(b"HTTP/1.1") == 1
    c.send(GET)  # pipelined behind the parked query: the twisted.web channel keeps it
    assert c.proto.inner is not None and c.tr.value().count(b"HTTP/1.1") == 1
    other = c.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
    other.makeConnection(StringTransport())
    other.dataReceived(PUT)  # wakes the query
    assert c.tr.value().count(b"HTTP/1.1 200 OK") == 3
    assert c.proto.inner is not None
    c.send(GET)
    assert c.proto.inner is None and c.tr.value().count(b"HTTP/1.1 200 OK") == 4


def test_header_deadline_after_take_back() -> None:
    c = Conn()
    c.send(b"GET /v1/status/leader HTTP/1.1\r\n\r\n")
    assert c.proto.inner is not None
    c.clock.advance(5)
    c.send(b"GET /v1/kv/k HTTP/1.1\r\n")  # taken back; its deadline starts now
    assert c.proto.inner is None
    c.clock.advance(0.9)
    assert not c.tr.disconnecting
    c.clock.advance(0.2)
    assert c.tr.disconnecting and c.refused("header-timeout") == 1


def test_an_answer_made_later_leaves_at_once_one_made_while_reading_is_buffered(
    monkeypatch: Any,
) -> None:
    """A write's answer comes from the raft commit, in a later reactor turn: it is sent with
    ``write_now`` (at once); an answer made while reading its request keeps Twisted's buffered
    ``write`` (the answers of one turn leave together)."""
    import wanfedtx.http.fastkv as fastkv

    sent_now: list[bytes] = []

    def write_now(transport: Any, data: bytes) -> None:
        sent_now.append(data)
        transport.write(data)

    monkeypatch.setattr(fastkv, "write_now", write_now)
    c = Conn()
    c.send(GET)  # answered inside dataReceived
    assert sent_now == [] and c.tr.value().startswith(b"HTTP/1.1 404")
    c.tr.clear()
    c.side.held.hold = True
    c.send(PUT)
    assert sent_now == []
    c.side.held.release()  # the commit, later
    assert len(sent_now) == 1 and sent_now[0] == c.tr.value()
    assert sent_now[0].startswith(b"HTTP/1.1 200 OK") and sent_now[0].endswith(b"true")
