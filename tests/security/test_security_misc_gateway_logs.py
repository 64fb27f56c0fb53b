"""Gateway log volume under attack (issue 11, item 5): bad connections write a bounded number of
lines, each with the peer and the cause; ordinary per-connection lines are DEBUG."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import LogLevel

from wanfedtx.gateway.relay import DownstreamProtocol, RelayFactory, RelaySettings
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.ratelog import DEFAULT_BURST, DEFAULT_INTERVAL

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gateway"))
from gateway_hellos import real_client_hello
from relay_support import connect_from, relay_factory

SNAP = routes_to_snapshot(
    {
        "clusters": [
            {"name": "c", "endpoints": [{"address": "10.0.0.1", "port": 1}]},
            {"name": "empty", "endpoints": []},
        ],
        "filter_chains": [
            {"server_names": ["a.test"], "cluster": "c", "stat_prefix": "p"},
            {"server_names": ["b.test"], "cluster": "missing", "stat_prefix": "q"},
        ],
    },
    "127.0.0.1",
    4431,
)
N = 2000


def gateway_lines(logged: list[dict[str, Any]], at_least: LogLevel = LogLevel.info) -> list[Any]:
    order = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]
    return [
        e
        for e in logged
        if e.get("log_namespace") == "wanfed.gateway"
        and order.index(e["log_level"]) >= order.index(at_least)
    ]


def make(max_connections: int | None = None, **kw: Any) -> tuple[MemoryReactorClock, RelayFactory]:
    return relay_factory(
        SNAP, RelaySettings(max_connections=max_connections, **kw), random.Random(1)
    )


def connect(f: RelayFactory, i: int) -> tuple[DownstreamProtocol, StringTransportWithDisconnection]:
    return connect_from(f, address.IPv4Address("TCP", "192.0.2.7", 1024 + i))


CASES = {
    "bad-hello": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown-sni": real_client_hello("nothing.example"),
    "no-route": real_client_hello("b.test"),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_bad_connections_write_a_bounded_number_of_lines(
    reason: str, logged: list[dict[str, Any]]
) -> None:
    reactor, f = make()
    for i in range(N):
        p, t = connect(f, i)
        p.dataReceived(CASES[reason])
        assert not t.connected
    lines = gateway_lines(logged)
    assert len(lines) == DEFAULT_BURST
    for e in lines:
        assert e["reason"] == reason
        assert e["peer"].startswith("192.0.2.7:")
        assert "{peer}" in e["log_format"]
    reactor.advance(DEFAULT_INTERVAL)
    summary = gateway_lines(logged)[DEFAULT_BURST:]
    assert len(summary) == 1
    assert summary[0]["count"] == N - DEFAULT_BURST and summary[0]["reason"] == reason


def test_hello_timeouts_are_bounded_and_name_the_peer(logged: list[dict[str, Any]]) -> None:
    reactor, f = make(hello_timeout=1.0)
    for i in range(N):
        connect(f, i)
    reactor.advance(1.0)
    assert f.listener_stats.downstream_pre_cx_timeout == N
    lines = gateway_lines(logged)
    assert len(lines) == DEFAULT_BURST
    assert all(e["reason"] == "hello-timeout" and e["peer"] for e in lines)
    reactor.advance(DEFAULT_INTERVAL)
    assert len(gateway_lines(logged)) == DEFAULT_BURST + 1


def test_bad_hello_line_names_the_cause(logged: list[dict[str, Any]]) -> None:
    _, f = make()
    p, _ = connect(f, 0)
    p.dataReceived(CASES["bad-hello"])
    (line,) = gateway_lines(logged)
    assert line["cause"] == "not_tls: first byte 0x47 is not a TLS handshake"


def test_connection_limit_lines_are_bounded(logged: list[dict[str, Any]]) -> None:
    _, f = make(max_connections=1)
    connect(f, 0)
    for i in range(N):
        assert f.buildProtocol(address.IPv4Address("TCP", "192.0.2.8", 2000 + i)) is None
    lines = gateway_lines(logged)
    assert len(lines) == DEFAULT_BURST
    assert all(e["reason"] == "connection-limit" for e in lines)
    assert lines[0]["peer"] == "192.0.2.8:2000"
    f.close_all()  # stopping writes the pending summary at once
    assert gateway_lines(logged)[-1]["count"] == N - DEFAULT_BURST


def test_a_good_connection_writes_nothing_at_info(logged: list[dict[str, Any]]) -> None:
    reactor, f = make()
    p, _ = connect(f, 0)
    p.dataReceived(real_client_hello("a.test"))
    assert len(reactor.tcpClients) == 1
    assert gateway_lines(logged) == []
