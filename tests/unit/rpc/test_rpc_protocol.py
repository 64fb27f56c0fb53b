"""RPC server/client protocols in memory: rpc-single ordering, rpc-multi concurrency, errors."""

from __future__ import annotations

from typing import Any

import pytest
from rpc_support import Link
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wanfedtx.rpc.codec import encode_request
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import ConnectionClosed, RemoteError
from wanfedtx.rpc.protocol import RPCClientProtocol, RPCServerProtocol


def setup(multi: bool) -> tuple[Link, RPCClientProtocol, dict[str, list[Deferred[Any]]]]:
    waits: dict[str, list[Deferred[Any]]] = {"slow": []}
    eps = default_endpoints()

    def slow(args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waits["slow"].append(d)
        return d

    def boom(args: Any) -> Any:
        raise ValueError("bad args: " + repr(args))

    eps.register("Test.Slow", slow)
    eps.register("Test.Echo", lambda a: a)
    eps.register("Test.Boom", boom)
    client = RPCClientProtocol(multi=multi)
    link = Link(RPCServerProtocol(eps, multi=multi), client, Clock())
    return link, client, waits


def test_multi_answers_in_completion_order() -> None:
    link, client, waits = setup(multi=True)
    got: list[Any] = []
    client.call("Test.Slow", 1).addCallback(lambda r: got.append(("slow", r)))
    client.call("Test.Echo", 2).addCallback(lambda r: got.append(("echo", r)))
    link.pump()
    assert got == [("echo", 2)]  # the fast call overtook the slow one
    waits["slow"][0].callback("done")
    link.pump()
    assert got == [("echo", 2), ("slow", "done")]


def test_single_serves_one_call_at_a_time() -> None:
    link, client, waits = setup(multi=False)
    got: list[Any] = []
    client.call("Test.Slow", 1).addCallback(got.append)
    client.call("Test.Echo", 2).addCallback(got.append)
    link.pump()
    assert got == [] and len(waits["slow"]) == 1
    waits["slow"][0].callback("first")
    link.pump()
    assert got == ["first", 2]


def test_errors_travel_as_strings() -> None:
    link, client, _ = setup(multi=True)
    errs: list[Any] = []
    client.call("Test.Boom", 5).addErrback(lambda f: errs.append(f.value))
    client.call("Nope.X").addErrback(lambda f: errs.append(f.value))
    link.pump()
    assert [type(e) for e in errs] == [RemoteError, RemoteError]
    assert [str(e) for e in errs] == ["bad args: 5", "rpc: can't find service Nope.X"]


def test_pending_calls_fail_when_connection_closes() -> None:
    link, client, _ = setup(multi=True)
    errs: list[Any] = []
    client.call("Test.Slow").addErrback(lambda f: errs.append(f.value))
    link.pump()
    link.disconnect()
    assert isinstance(errs[0], ConnectionClosed)
    client.call("Status.Ping").addErrback(lambda f: errs.append(f.value))
    assert isinstance(errs[1], ConnectionClosed)


def test_unencodable_arguments_fail_the_call_only() -> None:
    link, client, _ = setup(multi=True)
    errs: list[Any] = []
    client.call("Test.Echo", object()).addErrback(lambda f: errs.append(str(f.value)))
    assert "can't encode arguments of Test.Echo" in errs[0]
    got: list[Any] = []
    client.call("Test.Echo", 3).addCallback(got.append)
    link.pump()
    assert got == [3]


@pytest.mark.parametrize("junk", [b"\x00\x00\x00\x02\x91\x00", b"\xff\xff\xff\xff"])
def test_server_closes_on_bad_frame(junk: bytes, fail_on_logged_errors: Any) -> None:
    server = RPCServerProtocol(default_endpoints(), multi=True, max_frame_size=1024)
    t = StringTransport()
    server.makeConnection(t)
    server.dataReceived(encode_request(1, "Status.Ping", None) + junk)
    assert t.disconnecting
    assert t.value() == b"\x00\x00\x00\x05\x94\x01\x01\xc0\xc0"  # the good call was answered


@pytest.mark.parametrize("multi", [False, True])
def test_unanswered_calls_pause_reading_until_answered(multi: bool) -> None:
    """A peer that pipelines calls faster than they are answered is throttled (TCP
    back-pressure) at MAX_PENDING_CALLS instead of growing the queue without bound."""
    from wanfedtx.rpc.constants import MAX_PENDING_CALLS

    waits: list[Deferred[Any]] = []
    eps = default_endpoints()

    def slow(args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waits.append(d)
        return d

    eps.register("Test.Slow", slow)
    server = RPCServerProtocol(eps, multi=multi)
    t = StringTransport()
    server.makeConnection(t)
    burst = b"".join(encode_request(i, "Test.Slow", None) for i in range(MAX_PENDING_CALLS + 5))
    server.dataReceived(burst)
    assert t.producerState == "paused"
    while waits and t.producerState == "paused":
        waits.pop(0).callback("ok")
    assert t.producerState == "producing"
    assert not t.disconnecting


def test_malformed_frames_log_through_the_rate_limit() -> None:
    """With a clock, a peer's bad frames are logged with the peer, at most a burst per
    interval, whatever the number of connections."""
    from twisted.internet.address import IPv4Address
    from twisted.logger import globalLogPublisher

    from wanfedtx.rpc.interfaces import ConnectionInfo
    from wanfedtx.rpc.protocol import RPCHandler

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = Clock()
        handler = RPCHandler(default_endpoints(), multi=True, clock=clock)
        for i in range(50):
            t = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 4000 + i))
            proto = handler.build_protocol(ConnectionInfo(t, 4, None, tls=False))
            proto.makeConnection(t)
            proto.dataReceived(b"\xff\xff\xff\xff")
            assert t.disconnecting
        clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if e.get("log_namespace") == "wanfedtx.rpc"]
    assert len(lines) == 11
    assert lines[0]["reason"] == "rpc-frame" and "192.0.2.1" in lines[0]["peer"]
    assert lines[-1]["count"] == 40


def test_async_endpoints_and_failures_returned_by_an_endpoint_are_answered() -> None:
    from twisted.python.failure import Failure

    eps = default_endpoints()

    async def later(args: Any) -> Any:
        return ["async", args]

    async def refuses(args: Any) -> Any:
        raise ValueError("no")

    eps.register("Test.Async", later)
    eps.register("Test.Refuses", refuses)
    eps.register("Test.Failure", lambda a: Failure(ValueError("as a failure")))
    client = RPCClientProtocol(multi=True)
    link = Link(RPCServerProtocol(eps, multi=True), client, Clock())
    got: list[Any] = []
    client.call("Test.Async", 3).addCallback(got.append)
    client.call("Test.Refuses").addErrback(lambda f: got.append(str(f.value)))
    client.call("Test.Failure").addErrback(lambda f: got.append(str(f.value)))
    link.pump()
    assert got == [["async", 3], "no", "as a failure"]
