"""The sans-IO connection core of the gateway, tested by the effects it emits for event logs.

Fixed logs pin the transitions (hello -> connecting -> relaying -> closed, fail-over, the
counters and peer-caused log reasons); hypothesis drives random event sequences and checks the
invariants: relayed only after a route was found, nothing written upstream before it connected,
closed is terminal (one Close, no more IO), every path ends closed once both sides close, and the
active gauges return to zero.
"""

from __future__ import annotations

import random
from typing import Any

from gateway_hellos import real_client_hello
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from relay_support import cluster_c

from wanfedtx.gateway import peerlog
from wanfedtx.gateway.conn import (
    TRANSITIONS,
    Abort,
    AbortUp,
    Close,
    Connect,
    Connection,
    DownBytes,
    DownEof,
    DownLost,
    Effect,
    Event,
    HelloTimeout,
    Idle,
    Log,
    Moved,
    PauseDown,
    Relay,
    RelaySettings,
    ShutdownDown,
    ShutdownUp,
    State,
    UpBytes,
    UpConnected,
    UpEof,
    UpFailed,
    UpLost,
    WriteDown,
    WriteUp,
)
from wanfedtx.gateway.router import ROUTABLE_HEALTH, RouteTable
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.snapshot import Endpoint
from wanfedtx.gateway.stats import GatewayStats

SNAP = routes_to_snapshot(
    {
        "clusters": [
            cluster_c(),
            {
                "name": "dead",
                "endpoints": [{"address": "10.0.0.9", "port": 9, "health": "UNHEALTHY"}],
            },
        ],
        "filter_chains": [
            {"server_names": ["a.test"], "cluster": "c", "stat_prefix": "p"},
            {"server_names": ["dead.test"], "cluster": "dead", "stat_prefix": "d"},
            {"server_names": ["ghost.test"], "cluster": "ghost", "stat_prefix": "g"},
        ],
    },
    "127.0.0.1",
    4431,
)
TABLE = RouteTable(SNAP)
HELLOS = {sni: real_client_hello(sni) for sni in ("a.test", "dead.test", "ghost.test", "x.test")}
HELLOS["none"] = real_client_hello(None)
EP = Endpoint("10.0.0.1", 1)


def new(rng_seed: int = 3, **kw: Any) -> tuple[Connection, GatewayStats]:
    stats = GatewayStats()
    c = Connection(
        lambda: TABLE,
        stats,
        stats.listener("127.0.0.1", 4431),
        RelaySettings(**kw),
        random.Random(rng_seed),
        peer="192.0.2.1:5000",
    )
    return c, stats


def kinds(effects: list[Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


# -- fixed event logs ----------------------------------------------------------------------


def test_hello_routes_connects_and_relays_the_buffered_bytes() -> None:
    c, stats = new()
    hello = HELLOS["a.test"]
    assert c.handle(DownBytes(hello[:7])) == []
    out = c.handle(DownBytes(hello[7:] + b"early"))
    assert kinds(out) == ["PauseDown", "Connect"]
    connect = out[1]
    assert isinstance(connect, Connect) and connect.timeout == 2.5
    assert connect.endpoint.address in ("10.0.0.1", "10.0.0.2")
    assert c.state is State.CONNECTING
    assert c.handle(DownBytes(b"more")) == []  # buffered until upstream is up
    out = c.handle(UpConnected())
    assert out == [Relay(hello + b"early" + b"more")]
    assert c.state is State.RELAYING
    assert c.handle(DownBytes(b"x")) == [WriteUp(b"x")]
    assert c.handle(UpBytes(b"yz")) == [WriteDown(b"yz")]
    assert c.handle(DownEof()) == [ShutdownUp()]
    assert c.handle(UpEof()) == [Close(True, "both sides closed")]
    assert c.state is State.CLOSED
    cs, tcp, ls = stats.clusters["c"], stats.tcp["p"], stats.listeners["127.0.0.1_4431"]
    assert (cs.upstream_cx_total, cs.upstream_cx_active) == (1, 0)
    assert tcp.downstream_cx_rx_bytes_total == len(hello) + 10
    assert cs.upstream_cx_tx_bytes_total == len(hello) + 10
    assert (tcp.downstream_cx_tx_bytes_total, cs.upstream_cx_rx_bytes_total) == (2, 2)
    assert ls.downstream_cx_active == 0
    assert (stats.inspector.tls_found, stats.inspector.sni_found) == (1, 1)


def test_fail_over_tries_each_healthy_endpoint_once_then_closes() -> None:
    c, stats = new()
    first = c.handle(DownBytes(HELLOS["a.test"]))[1]
    assert isinstance(first, Connect)
    out = c.handle(UpFailed(first.endpoint, "refused"))
    assert kinds(out) == ["Log", "Connect"]
    log = out[0]
    assert isinstance(log, Log) and log.reason == peerlog.UPSTREAM_CONNECT
    assert log.fields["peer"] == "192.0.2.1:5000" and log.fields["why"] == "refused"
    second = out[1]
    assert isinstance(second, Connect)
    assert {first.endpoint.port, second.endpoint.port} == {1, 2}  # never the UNHEALTHY one
    out = c.handle(UpFailed(second.endpoint, "timeout", timed_out=True))
    assert kinds(out) == ["Log", "Log", "Close"]
    assert [e.reason for e in out if isinstance(e, Log)] == [
        peerlog.UPSTREAM_CONNECT,
        peerlog.NO_ENDPOINT,
    ]
    cs = stats.clusters["c"]
    assert (cs.upstream_cx_total, cs.upstream_cx_connect_fail, cs.upstream_cx_connect_timeout) == (
        2,
        2,
        1,
    )
    assert cs.upstream_cx_none_healthy == 0
    assert c.handle(UpConnected()) == [AbortUp()]  # a late upstream is dropped, still closed
    assert c.state is State.CLOSED


def test_max_connect_attempts_bounds_the_fail_over() -> None:
    c, _ = new(max_connect_attempts=1)
    first = c.handle(DownBytes(HELLOS["a.test"]))[1]
    assert isinstance(first, Connect)
    assert kinds(c.handle(UpFailed(first.endpoint, "refused"))) == ["Log", "Log", "Close"]


def test_refusals_count_and_log_with_their_reason() -> None:
    cases = [
        ("x.test", peerlog.UNKNOWN_SNI, "no_filter_chain_match"),
        ("none", peerlog.UNKNOWN_SNI, "no_filter_chain_match"),
        ("ghost.test", peerlog.NO_ROUTE, "downstream_cx_no_route"),
        ("dead.test", peerlog.NO_ENDPOINT, "upstream_cx_none_healthy"),
    ]
    for sni, reason, counter in cases:
        c, stats = new()
        out = c.handle(DownBytes(HELLOS[sni]))
        logs = [e for e in out if isinstance(e, Log)]
        assert [e.reason for e in logs] == [reason]
        last = out[-1]
        assert isinstance(last, Close) and not last.clean
        scopes = [stats.listeners["127.0.0.1_4431"], *stats.tcp.values(), *stats.clusters.values()]
        assert sum(getattr(s, counter, 0) for s in scopes) == 1
        assert stats.listeners["127.0.0.1_4431"].downstream_cx_active == 0


def test_bad_hello_and_hello_timeout() -> None:
    c, stats = new()
    out = c.handle(DownBytes(b"GET / HTTP/1.1\r\n\r\n"))
    assert isinstance(out[0], Log) and out[0].reason == peerlog.BAD_HELLO
    assert isinstance(out[1], Close) and not out[1].clean
    assert stats.inspector.tls_not_found == 1
    c, stats = new()
    out = c.handle(HelloTimeout())
    assert isinstance(out[0], Log) and out[0].reason == peerlog.HELLO_TIMEOUT
    assert out[0].fields["timeout"] == 5.0
    assert stats.listeners["127.0.0.1_4431"].downstream_pre_cx_timeout == 1
    assert c.handle(HelloTimeout()) == []  # closed is terminal


def test_idle_and_upstream_loss_while_relaying() -> None:
    c, stats = new()
    c.handle(DownBytes(HELLOS["a.test"]))
    c.handle(UpConnected())
    c.handle(Moved(10, 20))
    out = c.handle(Idle())
    assert isinstance(out[0], Log) and out[0].reason is None and out[0].format == peerlog.MSG_IDLE
    assert out[1] == Close(True, "idle")
    assert stats.tcp["p"].idle_timeout == 1
    assert stats.tcp["p"].downstream_cx_tx_bytes_total == 20
    assert c.handle(UpLost(clean=True)) == []  # counted, nothing left to close
    assert stats.clusters["c"].upstream_cx_destroy_remote == 1
    c, stats = new()
    c.handle(DownBytes(HELLOS["a.test"]))
    c.handle(UpConnected())
    assert c.handle(UpLost(clean=False)) == [Close(False, "upstream lost")]
    assert stats.clusters["c"].upstream_cx_destroy_local == 1
    assert stats.clusters["c"].upstream_cx_active == 0


def test_table_is_read_at_hello_time() -> None:
    other = RouteTable(
        routes_to_snapshot(
            {
                "clusters": [{"name": "d", "endpoints": [{"address": "10.9.9.9", "port": 9}]}],
                "filter_chains": [{"server_names": ["a.test"], "cluster": "d", "stat_prefix": "q"}],
            },
            "127.0.0.1",
            4431,
        )
    )
    current = [TABLE]
    stats = GatewayStats()
    c = Connection(
        lambda: current[0], stats, stats.listener("h", 1), RelaySettings(), random.Random(1)
    )
    c.handle(DownBytes(HELLOS["a.test"][:5]))
    current[0] = other
    out = c.handle(DownBytes(HELLOS["a.test"][5:]))
    assert isinstance(out[1], Connect) and out[1].endpoint.address == "10.9.9.9"


# -- random event sequences ----------------------------------------------------------------


def _event_hello(draw: Any, hello: bytes, fed: list[int]) -> Event:
    """The next piece of the ClientHello (bytes after it once it is all sent)."""
    n = draw(st.integers(1, 600))
    chunk = hello[fed[0] : fed[0] + n] or b"after-hello"
    fed[0] += n
    return DownBytes(chunk)


def _event(draw: Any, hello: bytes, fed: list[int]) -> Event:
    kind = draw(
        st.sampled_from(
            [
                "hello",
                "hello",
                "hello",
                "garbage",
                "timeout",
                "connected",
                "connected",
                "failed",
                "failed",
                "upbytes",
                "moved",
                "downeof",
                "upeof",
                "downlost",
                "uplost",
                "idle",
                "abort",
            ]
        )
    )
    if kind == "hello":
        return _event_hello(draw, hello, fed)
    if kind == "garbage":
        return DownBytes(draw(st.binary(min_size=1, max_size=8)))
    if kind == "timeout":
        return HelloTimeout()
    if kind == "connected":
        return UpConnected()
    if kind == "failed":
        return UpFailed(EP, "refused", draw(st.booleans()))
    if kind == "upbytes":
        return UpBytes(draw(st.binary(min_size=1, max_size=8)))
    if kind == "moved":
        return Moved(draw(st.integers(0, 100)), draw(st.integers(0, 100)))
    if kind == "downeof":
        return DownEof()
    if kind == "upeof":
        return UpEof()
    if kind == "downlost":
        return DownLost(draw(st.booleans()))
    if kind == "uplost":
        return UpLost(draw(st.booleans()))
    if kind == "idle":
        return Idle()
    return Abort("stop")


@st.composite
def scenarios(draw: Any) -> tuple[str, list[Event], bool, int]:
    sni = draw(st.sampled_from(["a.test", "a.test", "a.test", "dead.test", "ghost.test", "x.test"]))
    hello = HELLOS[sni]
    fed = [0]
    events: list[Event] = []
    if draw(st.booleans()):  # mostly a whole hello first, so that later states are reached
        while fed[0] < len(hello):
            events.append(_event_hello(draw, hello, fed))
        if draw(st.booleans()):
            events.append(UpConnected())
    events += [_event(draw, hello, fed) for _ in range(draw(st.integers(0, 40)))]
    return sni, events, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_over_random_event_sequences(
    scenario: tuple[str, list[Event], bool, int],
) -> None:
    _sni, events, lose, seed = scenario
    c, stats = new(rng_seed=seed)
    connects = 0  # Connect effects seen
    up_connected = False  # an UpConnected was taken while connecting
    relayed = False
    closes = 0
    # both sides close at the end, by FIN or by losing the socket
    tail: list[Event] = [DownLost(True), UpLost(True)] if lose else [DownEof(), UpEof()]
    for ev in [*events, *tail]:
        before = c.state
        out = c.handle(ev)
        after = c.state
        assert after is before or after in TRANSITIONS[before]
        if before is State.CLOSED:
            # closed is terminal: nothing but counting a late upstream's news, or dropping it
            assert all(isinstance(e, (Log, AbortUp)) for e in out)
        for e in out:
            if isinstance(e, Connect):
                connects += 1
                assert c.route is not None and c.route.endpoints, "connected without a route"
                assert e.endpoint.health in ROUTABLE_HEALTH
            elif isinstance(e, PauseDown):
                assert c.route is not None
            elif isinstance(e, Relay):
                assert isinstance(ev, UpConnected) and before is State.CONNECTING
                assert c.route is not None and connects >= 1, "relayed without a route"
                up_connected = relayed = True
            elif isinstance(e, WriteUp):
                assert up_connected and relayed, "bytes upstream before it connected"
            elif isinstance(e, (WriteDown, ShutdownUp, ShutdownDown)):
                assert relayed
            elif isinstance(e, Close):
                closes += 1
                assert after is State.CLOSED
        if after is State.RELAYING:
            assert relayed
            event("reached relaying")
    assert c.state is State.CLOSED, "both sides closed but the connection is not"
    assert closes == 1
    assert stats.listeners["127.0.0.1_4431"].downstream_cx_active == 0
    assert all(cs.upstream_cx_active == 0 for cs in stats.clusters.values())
