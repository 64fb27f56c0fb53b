"""Relay state machine on fake transports and a fake clock: deadline, limit, fail-over, routing."""

from __future__ import annotations

import random

import pytest
from gateway_hellos import real_client_hello
from relay_support import cluster_c, connect_from, relay_factory
from twisted.internet import address, error
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure

from wanfedtx.gateway.relay import DownstreamProtocol, RelayFactory, RelaySettings
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.routes import routes_to_snapshot

SNAP = routes_to_snapshot(
    {
        "clusters": [cluster_c()],
        "filter_chains": [{"server_names": ["a.test"], "cluster": "c", "stat_prefix": "p"}],
    },
    "127.0.0.1",
    4431,
)
PEER = address.IPv4Address("TCP", "127.0.0.1", 50000)


def make(settings: RelaySettings | None = None) -> tuple[MemoryReactorClock, RelayFactory]:
    return relay_factory(SNAP, settings or RelaySettings(), random.Random(3))


def connect(f: RelayFactory) -> tuple[DownstreamProtocol, StringTransportWithDisconnection]:
    return connect_from(f, PEER)


@pytest.mark.parametrize("seconds, closed", [(4.9, False), (5.0, True)])
def test_hello_deadline_is_driven_by_the_clock(seconds: float, closed: bool) -> None:
    reactor, f = make()
    p, t = connect(f)
    p.dataReceived(real_client_hello("a.test")[:10])
    reactor.advance(seconds)
    assert (not t.connected) is closed
    assert f.listener_stats.downstream_pre_cx_timeout == int(closed)


def test_connection_limit_closes_the_excess() -> None:
    _, f = make(RelaySettings(max_connections=2))
    connect(f)
    connect(f)
    assert f.buildProtocol(PEER) is None
    assert f.listener_stats.downstream_cx_overflow == 1
    assert f.listener_stats.downstream_cx_active == 2


def test_fail_over_tries_each_healthy_endpoint_once_then_closes() -> None:
    reactor, f = make()
    p, t = connect(f)
    p.dataReceived(real_client_hello("a.test"))
    assert len(reactor.tcpClients) == 1
    host, _port, factory, timeout, _ = reactor.tcpClients[0]
    assert timeout == 2.5
    factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
    assert len(reactor.tcpClients) == 2
    second = reactor.tcpClients[1]
    assert {host, second[0]} == {"10.0.0.1", "10.0.0.2"}  # never the UNHEALTHY one
    second[2].clientConnectionFailed(None, Failure(error.TimeoutError()))
    assert len(reactor.tcpClients) == 2
    assert not t.connected
    cs = f.stats.clusters["c"]
    assert (cs.upstream_cx_total, cs.upstream_cx_connect_fail, cs.upstream_cx_connect_timeout) == (
        2,
        2,
        1,
    )


def test_routing_uses_the_table_current_at_hello_time() -> None:
    reactor, f = make()
    p, _ = connect(f)
    other = routes_to_snapshot(
        {
            "clusters": [{"name": "d", "endpoints": [{"address": "10.9.9.9", "port": 9}]}],
            "filter_chains": [{"server_names": ["a.test"], "cluster": "d", "stat_prefix": "q"}],
        },
        "127.0.0.1",
        4431,
    )
    f.set_route_table(RouteTable(other))
    p.dataReceived(real_client_hello("a.test"))
    assert reactor.tcpClients[0][:2] == ("10.9.9.9", 9)


def test_no_sni_is_closed_without_connecting() -> None:
    reactor, f = make()
    p, t = connect(f)
    p.dataReceived(real_client_hello(None))
    assert not t.connected and reactor.tcpClients == []
    assert f.listener_stats.no_filter_chain_match == 1
