"""The HTTP API's bounds over a fake transport with the real Site, channel and request class:
route body caps (Content-Length and chunked) answered 413 before the body is kept, the header
deadline (slowloris) that neither trickled bytes, idle keep-alive nor parked queries confuse,
connections per client, non-UTF-8 URLs and deep JSON (400), and handler failures (plain 500 with
the exception logged)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
from http_support import StateApp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from klein import Klein
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from wanfedtx import metrics
from wanfedtx.agent.httpserver import _TrackingSite
from wanfedtx.http.channel import LINGER
from wanfedtx.http.common import IRequest, endpoint
from wanfedtx.http.family import family_app
from wanfedtx.http.limits import HTTPLimits
from wanfedtx.http.parking import APIRequest


class Boom(Exception):
    pass


class BoomRoutes:
    """A route family whose handler fails unexpectedly."""

    app: ClassVar[Klein] = family_app()
    prefixes: ClassVar[tuple[str, ...]] = ("/v1/boom",)

    @app.route("/v1/boom", methods=["GET"])
    @endpoint
    async def boom(self, request: IRequest) -> bytes:
        raise Boom("kaboom")


class Server(StateApp):
    def __init__(self, **limits: Any) -> None:
        super().__init__(extra=[BoomRoutes()])
        self.registry = metrics.Registry()
        self.site = _TrackingSite(
            self.api.resource(),
            requestFactory=APIRequest,
            http_limits=HTTPLimits(**limits),
            reactor=self.clock,
            registry=self.registry,
        )

    def connect(self, host: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        addr = IPv4Address("TCP", host, 40000)
        proto = self.site.buildProtocol(addr)
        assert proto is not None
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return proto, transport

    def refused(self, reason: str) -> float:
        metric = self.registry.counter("http.request.refused", "", ("reason",))
        return metric.value(reason=reason)


def _status(transport: StringTransport) -> bytes:
    return transport.value().split(b"\r\n", 1)[0]


def _body(transport: StringTransport) -> bytes:
    return transport.value().split(b"\r\n\r\n", 1)[1]


def test_content_length_over_the_kv_cap_is_413_before_the_body() -> None:
    s = Server(kv_max_value_size=1000)
    proto, tr = s.connect()
    proto.dataReceived(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 413 Request Entity Too Large"
    assert _body(tr) == (
        b"Request body(10485760 bytes) too large, max size: 1000 bytes. "
        b"See limits.kv_max_value_size."
    )
    # What follows is dropped, never handed to a request; the connection is closed.
    proto.dataReceived(b"x" * 100_000)
    assert tr.disconnecting
    assert s.fsm.state.kvs_get(None, "k")[1] is None
    assert s.refused("body-too-large") == 1


def test_chunked_body_is_cut_at_the_cap() -> None:
    s = Server(max_request_body=4096)
    proto, tr = s.connect()
    proto.dataReceived(
        b"PUT /v1/catalog/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"1000\r\n" + b"a" * 4096 + b"\r\n"
    proto.dataReceived(chunk)
    assert tr.value() == b""  # exactly at the cap: still reading
    proto.dataReceived(chunk)
    assert _status(tr) == b"HTTP/1.1 413 Request Entity Too Large"
    assert _body(tr) == (
        b"Request body too large, max size: 4096 bytes. See limits.http_max_request_body."
    )
    request = proto._channel.requests[-1]
    assert request.content.tell() == 4096  # never more than the cap kept
    for _ in range(100):
        proto.dataReceived(chunk)
    assert request.content.tell() == 4096


def test_body_under_the_cap_is_served() -> None:
    s = Server(kv_max_value_size=1000)
    proto, tr = s.connect()
    proto.dataReceived(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert _status(tr) == b"HTTP/1.1 200 OK"
    assert s.fsm.state.kvs_get(None, "k")[1]["Value"] == b"abc"


def test_other_routes_have_a_small_cap() -> None:
    s = Server()
    proto, tr = s.connect()
    proto.dataReceived(b"GET /v1/catalog/nodes HTTP/1.1\r\nContent-Length: 70000\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"max size: 65536 bytes" in _body(tr)


def test_refused_connection_is_aborted_after_linger() -> None:
    s = Server(kv_max_value_size=10)
    proto, tr = s.connect()
    proto.dataReceived(b"PUT /v1/kv/k HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert tr.disconnecting
    s.clock.advance(LINGER)  # no leftover timers; StringTransport has no half-close


def test_slowloris_closed_at_header_deadline() -> None:
    s = Server(read_header_timeout=1.0)
    proto, tr = s.connect()
    for byte in b"GET /v1/status/leader HTTP/1.1\r\n":
        if tr.disconnecting:
            break
        proto.dataReceived(bytes([byte]))
        s.clock.advance(0.2)
    assert tr.disconnecting and s.clock.seconds() <= 1.2
    assert s.refused("header-timeout") == 1


def test_keepalive_idle_and_parked_requests_are_not_cut() -> None:
    s = Server(read_header_timeout=1.0)
    proto, tr = s.connect()
    proto.dataReceived(b"GET /v1/catalog/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 200 OK"
    s.clock.advance(30)  # idle keep-alive: Twisted's idle timeout (60 s) applies, not ours
    assert not tr.disconnecting
    tr.clear()
    proto.dataReceived(b"GET /v1/catalog/nodes?index=1&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n")
    s.clock.advance(120)  # parked on a blocking query
    assert not tr.disconnecting and tr.value() == b""
    # The next request on the connection starts a new deadline at its first byte.
    s.fsm.state.kvs_set(2, {"Key": "w", "Value": b"1"})
    proto2, tr2 = s.connect()
    proto2.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
    s.clock.advance(5)
    assert not tr2.disconnecting


def test_connections_per_client() -> None:
    s = Server(max_conns_per_client=2)
    a, _ = s.connect()
    s.connect()
    assert s.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is None
    assert s.refused("conn-limit") == 1
    s.connect("127.0.0.2")
    a.connectionLost(None)
    assert s.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2)) is not None
    assert s.site.per_client == {"127.0.0.1": 2, "127.0.0.2": 1}


def test_no_limit_with_zero() -> None:
    s = Server(max_conns_per_client=0)
    for _ in range(300):
        s.connect()


@pytest.mark.parametrize("uri", [b"/v1/kv/%ff%fe", b"/v1/catalog/nodes?dc=%ff", b"/v1/kv/%c3"])
def test_non_utf8_url_is_400(uri: bytes) -> None:
    s = Server()
    proto, tr = s.connect()
    proto.dataReceived(b"GET " + uri + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 400 Bad Request"
    assert _body(tr) == b"Non-UTF-8 encoding in URL."
    assert s.refused("bad-url") == 1


def test_non_utf8_host_is_400() -> None:
    s = Server()
    proto, tr = s.connect()
    proto.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 400 Bad Request"
    assert _body(tr) == b"Non-UTF-8 encoding in URL."


@pytest.mark.parametrize("uri", [b"/v1/kv/\xff", b"/v1/kv/a?x=\xc3"])
def test_raw_non_ascii_request_line_is_400(uri: bytes) -> None:
    s = Server()
    proto, tr = s.connect()
    proto.dataReceived(b"GET " + uri + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(tr) == b"HTTP/1.1 400 Bad Request"
    assert _body(tr) == b"Malformed HTTP request"
    assert tr.disconnecting


@pytest.mark.parametrize("depth", [65, 10_000])
def test_deep_json_is_400(depth: int) -> None:
    s = Server()
    proto, tr = s.connect()
    body = b'{"Node":' * depth + b"1" + b"}" * depth
    proto.dataReceived(
        b"PUT /v1/catalog/register HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    assert _status(tr) == b"HTTP/1.1 400 Bad Request"
    assert _body(tr) == b"Request decode failed: JSON nested deeper than 64 levels"


def test_invalid_utf8_json_is_400() -> None:
    s = Server()
    proto, tr = s.connect()
    body = b'{"Node":"\xff"}'
    proto.dataReceived(
        b"PUT /v1/catalog/register HTTP/1.1\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    assert _status(tr) == b"HTTP/1.1 400 Bad Request"
    assert _body(tr).startswith(b"Request decode failed: 'utf-8' codec can't decode")


@pytest.mark.allow_logged_errors
def test_handler_exception_is_plain_500_and_logged() -> None:
    s = Server()
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        proto, tr = s.connect()
        proto.dataReceived(b"GET /v1/boom?token=secret HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert _status(tr) == b"HTTP/1.1 500 Internal Server Error"
    assert b"Content-Type: text/plain; charset=utf-8" in tr.value()
    assert _body(tr) == b"internal error: Boom"
    [event] = [e for e in events if "log_failure" in e]
    assert event["log_failure"].check(Boom)
    assert (event["method"], event["path"]) == ("GET", "/v1/boom")


@pytest.mark.allow_logged_errors
def test_failure_outside_handlers_is_plain_500() -> None:
    s = Server()
    proto, _ = s.connect()
    request = APIRequest(proto._channel)
    proto._channel.requests.append(request)
    request.method, request.uri = b"GET", b"/x"
    request.processingFailed(_failure())
    assert request.code == 500
    assert request.responseHeaders.getRawHeaders(b"Content-Type") == [
        b"text/plain; charset=utf-8"
    ]


def _failure() -> Any:
    from twisted.python.failure import Failure

    try:
        raise Boom("outside")
    except Boom:
        return Failure()


def test_kv_cap_comes_from_the_site_config() -> None:
    s = Server(kv_max_value_size=1_000_000)  # over the handler's own 512 KiB default
    proto, tr = s.connect()
    body = b"v" * 600_000
    proto.dataReceived(b"PUT /v1/kv/big HTTP/1.1\r\nContent-Length: 600000\r\n\r\n" + body)
    assert _status(tr) == b"HTTP/1.1 200 OK"
    assert s.fsm.state.kvs_get(None, "big")[1]["Value"] == body


def test_expect_continue_over_the_cap_gets_no_100() -> None:
    s = Server()
    proto, tr = s.connect()
    proto.dataReceived(
        b"PUT /v1/agent/service/register HTTP/1.1\r\nExpect: 100-continue\r\n"
        b"Content-Length: 2000000\r\n\r\n"
    )
    assert _status(tr) == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"100 Continue" not in tr.value()


def test_idle_timeout_line_is_rate_limited_with_the_peer() -> None:
    s = Server()
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        conns = [s.connect() for _ in range(30)]
        for proto, _ in conns:
            proto.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        s.clock.advance(61)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert all(tr.disconnecting for _, tr in conns)
    lines = [e for e in events if e.get("reason") == "idle-timeout"]
    assert len(lines) == 10 and lines[0]["peer"] == "127.0.0.1:40000"
    assert not [e for e in events if "Timing out client" in str(e.get("log_format"))]


@settings(max_examples=int(os.environ.get("WANFED_FUZZ_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from([b"GET", b"PUT", b"DELETE", b"POST", b"G\xffT", b"HEAD"]),
    path=st.tuples(
        st.sampled_from([b"/v1/kv/", b"/v1/catalog/register", b"/v1/agent/service/register",
                         b"/v1/agent/check/update/", b"/v1/catalog/nodes?", b"/v1/"]),
        st.binary(max_size=20),
    ).map(lambda t: t[0] + t[1].replace(b" ", b"").replace(b"\n", b"").replace(b"\r", b"")),
    header=st.binary(max_size=30),
    body=st.binary(max_size=200),
)
def test_random_requests_never_log_a_traceback(
    method: bytes, path: bytes, header: bytes, body: bytes
) -> None:
    s = Server(kv_max_value_size=100, read_header_timeout=1.0)
    proto, tr = s.connect()
    head = header.replace(b"\r", b"").replace(b"\n", b"")
    proto.dataReceived(
        method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nX-A: " + head
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    s.clock.advance(2)
    assert tr.value().startswith(b"HTTP/1.1 ") or tr.disconnecting


def test_keepalive_next_request_deadline_starts_at_its_first_byte() -> None:
    s = Server(read_header_timeout=1.0)
    proto, tr = s.connect()
    proto.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
    s.clock.advance(20)  # idle between requests: not the header deadline
    assert not tr.disconnecting
    proto.dataReceived(b"GET /v1/status/leader HTTP/1.1\r\n")
    s.clock.advance(0.9)
    proto.dataReceived(b"X-Slow: a\r\n")
    assert not tr.disconnecting
    s.clock.advance(0.1)
    assert tr.disconnecting
    assert s.refused("header-timeout") == 1
