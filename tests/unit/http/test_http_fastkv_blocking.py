"""Blocking reads (``?index``, ``?wait``) on the KV fast path, over fake transports and a fake
clock: many watchers park on the fast path (no twisted.web request), one write wakes them all
with the same bytes as the twisted.web path, a wait that runs out answers with the current
value, a loop of blocking reads stays on the fast path, and a watcher that leaves drops its
place in the wait group."""

from __future__ import annotations

import re
from typing import Any

from test_http_fastkv_diff import MASTER, Side
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wanfedtx.http.fastkv import FastChannel

_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
WATCHERS = 20


def _put(value: bytes) -> bytes:
    return b"PUT /v1/kv/w HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(value), value)


class Client:
    def __init__(self, side: Side, port: int) -> None:
        addr = IPv4Address("TCP", "127.0.0.1", port)
        self.proto: Any = side.site.buildProtocol(addr)
        self.tr = StringTransport(peerAddress=addr)
        self.proto.makeConnection(self.tr)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def answers(self) -> bytes:
        return _DATE.sub(b"\r\nDate: -\r\n", self.tr.value())

    def leave(self) -> None:
        self.proto.connectionLost(Failure(ConnectionDone()))


def _index(side: Side) -> int:
    writer = Client(side, 39000)
    writer.send(b"GET /v1/kv/w HTTP/1.1\r\n\r\n")
    found = re.search(rb"X-Consul-Index: (\d+)", writer.tr.value())
    assert found is not None
    writer.leave()
    return int(found.group(1))


def _watch_and_write(fast: bool) -> tuple[Side, list[Client], Client]:
    side = Side(fast, False)
    writer = Client(side, 39001)
    writer.send(_put(b"old"))
    index = _index(side)
    watchers = [Client(side, 40000 + i) for i in range(WATCHERS)]
    for i, w in enumerate(watchers):
        raw = b"&raw" if i % 2 else b""
        w.send(b"GET /v1/kv/w?index=%d&wait=1m%s HTTP/1.1\r\n\r\n" % (index, raw))
    assert all(w.tr.value() == b"" for w in watchers), "a watcher answered before the write"
    writer.send(_put(b"new"))
    return side, watchers, writer


def test_one_write_wakes_every_watcher_parked_on_the_fast_path() -> None:
    side, watchers, _ = _watch_and_write(True)
    assert all(isinstance(w.proto, FastChannel) and w.proto.inner is None for w in watchers)
    json_answers = {w.answers() for w in watchers[0::2]}
    raw_answers = {w.answers() for w in watchers[1::2]}
    assert len(json_answers) == 1 and len(raw_answers) == 1  # one rendering, replayed
    (raw,) = raw_answers
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\nnew")
    (as_json,) = json_answers
    assert b'"Value":"bmV3"' in as_json  # base64 of "new"
    # the same bytes as the twisted.web path, watcher by watcher
    _, old_watchers, _ = _watch_and_write(False)
    assert [w.answers() for w in watchers] == [w.answers() for w in old_watchers]
    assert len(_waits(side)) == 0  # the group answered and is gone


def test_a_wait_that_runs_out_answers_with_the_current_value_and_loops_on_the_fast_path() -> None:
    side = Side(True, False)
    client = Client(side, 40000)
    client.send(_put(b"v"))
    index = _index(side)
    for round_ in range(1, 4):
        client.send(b"GET /v1/kv/w?index=%d&wait=1s&raw HTTP/1.1\r\n\r\n" % index)
        assert client.tr.value().count(b"HTTP/1.1 200 OK") == round_  # the PUT's, then parked
        side.clock.advance(0.5)
        assert client.tr.value().count(b"HTTP/1.1 200 OK") == round_
        side.clock.advance(1.5)  # past the wait and its jitter
        assert client.tr.value().count(b"HTTP/1.1 200 OK") == round_ + 1
        last = client.tr.value().rpartition(b"HTTP/1.1 200 OK")[2]
        assert b"X-Consul-Index: %d\r\n" % index in last and last.endswith(b"\r\n\r\nv")
        assert client.proto.inner is None, "a blocking read left the fast path"


def test_a_watcher_that_leaves_drops_its_wait() -> None:
    side = Side(True, False)
    app_waits: Any = _waits(side)
    writer = Client(side, 39001)
    writer.send(_put(b"a"))
    index = _index(side)
    watcher = Client(side, 40000)
    watcher.send(b"GET /v1/kv/w?index=%d&wait=1m HTTP/1.1\r\n\r\n" % index)
    assert len(app_waits) == 1
    watcher.leave()
    assert len(app_waits) == 0  # the group had one member: gone with it
    writer.send(_put(b"b"))
    assert watcher.tr.value() == b""  # nothing written after the client left
    # no timer of the watcher's is left (the group's deadline went with it)
    assert all(getattr(dc.func, "__self__", None) is not watcher.proto
               for dc in side.clock.getDelayedCalls())


def _waits(side: Side) -> Any:
    """The wait groups of the side's state endpoints (``Side(fast, acl=False)`` is a StateApp)."""
    return side.app.endpoints.waits


def test_with_acls_a_watcher_that_leaves_drops_its_wait() -> None:
    side = Side(True, True)
    waits = side.net.servers["dc1"].endpoints.waits
    token = b"X-Consul-Token: " + MASTER.encode() + b"\r\n"
    writer = Client(side, 39001)
    writer.send(b"PUT /v1/kv/w HTTP/1.1\r\n%sContent-Length: 1\r\n\r\na" % token)
    writer.send(b"GET /v1/kv/w HTTP/1.1\r\n%s\r\n" % token)
    found = re.search(rb"X-Consul-Index: (\d+)", writer.tr.value())
    assert found is not None
    watcher = Client(side, 40000)
    watcher.send(b"GET /v1/kv/w?index=%s&wait=1m HTTP/1.1\r\n%s\r\n" % (found.group(1), token))
    assert len(waits) == 1 and watcher.tr.value() == b""
    watcher.leave()
    assert len(waits) == 0
