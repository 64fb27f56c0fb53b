"""The relay on loopback with real TLS clients and backends, on both data paths."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
import treq
from gateway_hellos import real_client_hello
from gateway_tls import (
    CA,
    TLSBackend,
    client_context,
    closed_without_reply,
    slow_hello_roundtrip,
    tls_roundtrip,
)
from twisted.internet import defer, protocol, task, threads
from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from wanfedtx.gateway.pump import splice_available
from wanfedtx.gateway.relay import RelaySettings
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.service import GatewayService
from wanfedtx.gateway.snapshot import Snapshot

pytestmark = pytest.mark.integration
TRUST = "11111111-2222-3333-4444-555555555555.consul"
PATHS = ["twisted"] + (["loop", "loop-python", "loop2"] if splice_available() else [])


def settings_for(path: str, **kw: Any) -> RelaySettings:
    """``loop`` relays with the compiled relay where it was built, ``loop-python`` with the
    Python pumps; ``loop2`` is the loop path with two workers sharing the port."""
    if path == "loop2":
        return RelaySettings(data_path="loop", workers=2, **kw)
    if path == "loop-python":
        return RelaySettings(data_path="loop", loop_relay="python", **kw)
    return RelaySettings(data_path=path, **kw)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


async def start_gateway(reactor: Any, snap: Snapshot, data_path: str, **kw: Any) -> GatewayService:
    svc = GatewayService(
        reactor,
        ("127.0.0.1", 0),
        snap,
        admin=("127.0.0.1", 0),
        settings=settings_for(data_path),
        rng=random.Random(1),
        **kw,
    )
    svc.startService()
    return svc


def explicit(routes: dict[str, list[tuple[str, int, int]]], catch_all: bool = True) -> Snapshot:
    clusters = [
        {"name": name, "endpoints": [{"address": h, "port": p, "weight": w} for h, p, w in eps]}
        for name, eps in routes.items()
    ]
    chains: list[dict[str, Any]] = [
        {"server_names": [name], "cluster": name, "stat_prefix": f"t_{i}"}
        for i, name in enumerate(routes)
    ]
    if catch_all:
        chains.append({"sni_cluster": True, "stat_prefix": "catch_all"})
    return routes_to_snapshot({"clusters": clusters, "filter_chains": chains}, "127.0.0.1", 0)


# -- TLS routing ---------------------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def tls_env(reactor: Any, ca: CA, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    pri = TLSBackend(reactor, ca, "pri.server.primary.consul")
    pri2 = TLSBackend(reactor, ca, "pri2.server.primary.consul")
    gw2 = TLSBackend(reactor, ca, "gw.server.secondary.consul")
    inputs = {
        "datacenter": "primary",
        "trust_domain": TRUST,
        "wan_federation": True,
        "servers": [
            {"node": "pri", "address": pri.address[0], "port": pri.address[1]},
            {"node": "pri2", "address": pri2.address[0], "port": pri2.address[1]},
        ],
        "gateways": {
            "primary": [],
            "secondary": [{"address": gw2.address[0], "port": gw2.address[1]}],
        },
    }
    snap = routes_to_snapshot({"inputs": inputs}, "127.0.0.1", 0)
    svc = await start_gateway(reactor, snap, request.param)
    yield svc
    await svc.stopService()
    for b in (pri, pri2, gw2):
        await b.stop()


async def via(svc: GatewayService, sni: str, ca: CA, payload: bytes = b"ping") -> tuple[str, bytes]:
    ctx = client_context(ca, ["consul/rpc-multi"])
    result: tuple[str, bytes] = await threads.deferToThread(
        tls_roundtrip, svc.address, sni, ctx, payload
    )
    return result


@pytest.mark.parametrize("tls_env", PATHS, indirect=True)
@pytest_twisted.ensureDeferred
async def test_exact_wildcard_and_catch_all_reach_the_right_backend(tls_env: Any, ca: CA) -> None:
    svc = tls_env
    assert await via(svc, "pri2.server.primary.consul", ca) == (
        "pri2.server.primary.consul",
        b"ping",
    )
    assert await via(svc, "pri.server.primary.consul", ca) == ("pri.server.primary.consul", b"ping")
    # wildcard *.server.secondary.consul, one label and several labels
    assert (await via(svc, "sec.server.secondary.consul", ca))[0] == "gw.server.secondary.consul"
    assert (await via(svc, "a.b.server.secondary.consul", ca))[0] == "gw.server.secondary.consul"
    assert (await via(svc, f"web.default.secondary.internal.{TRUST}", ca))[0] == (
        "gw.server.secondary.consul"
    )
    # catch-all sni_cluster: server.primary.consul balances over both servers
    seen = {(await via(svc, "server.primary.consul", ca))[0] for _ in range(12)}
    assert seen == {"pri.server.primary.consul", "pri2.server.primary.consul"}
    big = bytes(range(256)) * 4096
    assert await via(svc, "server.secondary.consul", ca, big) == ("gw.server.secondary.consul", big)
    await wait_for(lambda: svc.stats.value("cluster.server.primary.consul.upstream_cx_total") == 12)
    assert (
        svc.stats.value("tcp.mesh_gateway_local_server_default_primary_tcp.downstream_cx_total")
        == 2
    )
    await wait_for(
        lambda: (
            (svc.stats.value("cluster.server.secondary.consul.upstream_cx_rx_bytes_total") or 0)
            >= len(big)
        )
    )


@pytest.mark.parametrize("tls_env", PATHS, indirect=True)
@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_unknown_sni_and_non_tls_are_closed(tls_env: Any, ca: CA) -> None:
    svc = tls_env
    with pytest.raises((ConnectionError, OSError)):
        await via(svc, "nothing.here.example", ca)
    with pytest.raises((ConnectionError, OSError)):
        await via(svc, "ghost.server.primary.consul", ca)
    assert await threads.deferToThread(
        closed_without_reply, svc.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert await threads.deferToThread(
        closed_without_reply, svc.address, b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"
    )
    assert svc.stats.value("tcp.mesh_gateway_local_default_tcp.downstream_cx_no_route") == 2
    assert svc.stats.value("tls_inspector.tls_not_found") == 1
    assert svc.stats.value("tls_inspector.read_error") == 1
    # the gateway still works afterwards
    assert (await via(svc, "pri.server.primary.consul", ca))[0] == "pri.server.primary.consul"


@pytest.mark.parametrize("tls_env", PATHS, indirect=True)
@pytest_twisted.ensureDeferred
async def test_hello_one_byte_per_segment(tls_env: Any, ca: CA) -> None:
    svc = tls_env
    ctx = client_context(ca)
    cn = await threads.deferToThread(
        slow_hello_roundtrip, svc.address, "pri.server.primary.consul", ctx
    )
    assert cn == "pri.server.primary.consul"


@pytest.mark.parametrize("tls_env", ["twisted"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_admin_api(tls_env: Any, ca: CA) -> None:
    svc = tls_env
    await via(svc, "sec.server.secondary.consul", ca)
    base = f"http://127.0.0.1:{svc.admin_address[1]}"
    r = await treq.get(f"{base}/ready")
    assert r.code == 200 and (await r.text()).strip() == "LIVE"
    r = await treq.get(f"{base}/clusters?format=json")
    data = json.loads(await r.text())
    # what case-wanfed-gw's assert_upstream_has_endpoints_in_status reads
    healthy = [
        h
        for c in data["cluster_statuses"]
        if c["name"].startswith("secondary")
        for h in c["host_statuses"]
        if h["health_status"]["eds_health_status"] == "HEALTHY"
    ]
    assert len(healthy) == 1
    assert healthy[0]["address"]["socket_address"]["address"] == "127.0.0.1"
    stats = await (await treq.get(f"{base}/stats")).text()
    assert "cluster.server.secondary.consul.upstream_cx_total: 1\n" in stats
    assert f"listener.127.0.0.1_{svc.address[1]}.downstream_cx_total: 1\n" in stats
    prom = await (await treq.get(f"{base}/stats/prometheus")).text()
    assert 'envoy_cluster_upstream_cx_total{envoy_cluster_name="server.secondary.consul"} 1' in prom
    dump = json.loads(await (await treq.get(f"{base}/config_dump")).text())
    assert dump == svc.snapshot.to_json()


# -- raw TCP behaviour (after a real ClientHello) -------------------------------------------


@implementer(IHalfCloseableProtocol)
class Collect(protocol.Protocol):
    """Reads until FIN, then answers with the byte count and closes."""

    def __init__(self) -> None:
        self.got = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.got += data

    def readConnectionLost(self) -> None:
        self.transport.write(b"got %d" % len(self.got))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class SpeakFirst(protocol.Protocol):
    """Sends a greeting and half-closes on the first bytes; records what arrives after."""

    done: defer.Deferred[bytes]

    def __init__(self) -> None:
        self.got = bytearray()

    def dataReceived(self, data: bytes) -> None:
        if not self.got:
            self.transport.write(b"greeting")  # type: ignore[union-attr]
            self.transport.loseWriteConnection()  # type: ignore[union-attr]
        self.got += data

    def readConnectionLost(self) -> None:
        self.factory.done.callback(bytes(self.got))  # type: ignore[attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


class NamedEcho(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.name)  # type: ignore[attr-defined, union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def listen(reactor: Any, proto: Callable[[], protocol.Protocol], **attrs: Any) -> Any:
    f = protocol.Factory.forProtocol(proto)
    for k, v in attrs.items():
        setattr(f, k, v)
    return reactor.listenTCP(0, f, interface="127.0.0.1")


HELLO = real_client_hello("half.test")


def client_half_close(gw: tuple[str, int], payload: bytes) -> bytes:
    with socket.create_connection(gw, timeout=10) as s:
        s.sendall(HELLO + payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def server_half_close(gw: tuple[str, int]) -> bytes:
    with socket.create_connection(gw, timeout=10) as s:
        s.sendall(HELLO)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.sendall(b"after-eof")  # our write side is still open
        s.shutdown(socket.SHUT_WR)
        s.recv(10)  # wait for the close
        return out


@pytest.mark.parametrize("data_path", PATHS)
@pytest_twisted.ensureDeferred
async def test_half_close_both_ways(reactor: Any, data_path: str) -> None:
    collect = listen(reactor, Collect)
    speak_first = listen(reactor, SpeakFirst, done=defer.Deferred())
    snap = explicit({"half.test": [("127.0.0.1", collect.getHost().port, 1)]})
    svc = await start_gateway(reactor, snap, data_path)
    try:
        payload = b"x" * 300_000
        out = await threads.deferToThread(client_half_close, svc.address, payload)
        assert out == b"got %d" % (len(HELLO) + len(payload))
        svc.set_snapshot(explicit({"half.test": [("127.0.0.1", speak_first.getHost().port, 1)]}))
        out = await threads.deferToThread(server_half_close, svc.address)
        assert out == b"greeting"
        got = await speak_first.factory.done
        assert got == HELLO + b"after-eof"
    finally:
        await svc.stopService()
        await collect.stopListening()
        await speak_first.stopListening()


@pytest.mark.parametrize("data_path", PATHS)
@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_dead_endpoint_fails_over(reactor: Any, data_path: str) -> None:
    # Bound but never listening for the whole test: connects are refused, and no other
    # process can take the port meanwhile (a closed port could be reused and accept).
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    live = listen(reactor, NamedEcho, name=b"L")
    snap = explicit(
        {"half.test": [("127.0.0.1", dead_port, 1000), ("127.0.0.1", live.getHost().port, 1)]}
    )
    svc = await start_gateway(reactor, snap, data_path)
    try:

        def one() -> bytes:
            with socket.create_connection(svc.address, timeout=10) as s:
                s.sendall(HELLO)
                return s.recv(1)

        assert await threads.deferToThread(one) == b"L"
        assert svc.stats.value("cluster.half.test.upstream_cx_connect_fail") == 1
        assert svc.stats.value("cluster.half.test.upstream_cx_total") == 2
    finally:
        dead.close()
        await svc.stopService()
        await live.stopListening()


def stream(
    gw: tuple[str, int], rounds: int, started: threading.Event, size: int = 32768
) -> tuple[bytes, int]:
    """Echo ``rounds`` chunks of ``size`` bytes; return (backend name, bytes verified)."""
    with socket.create_connection(gw, timeout=20) as s:
        s.sendall(HELLO)
        name = s.recv(1)
        echoed = b""
        while len(echoed) < len(HELLO):  # the echo backend returns the hello too
            echoed += s.recv(len(HELLO) - len(echoed))
        assert echoed == HELLO
        started.set()
        chunk = bytes(range(256)) * (size // 256)
        ok = 0
        for _ in range(rounds):
            s.sendall(chunk)
            got = b""
            while len(got) < len(chunk):
                part = s.recv(len(chunk) - len(got))
                if not part:
                    raise ConnectionError("connection cut during a snapshot swap")
                got += part
            assert got == chunk
            ok += len(got)
        return name, ok


@pytest.mark.parametrize("data_path", PATHS)
@pytest_twisted.ensureDeferred
async def test_snapshot_swap_under_load_drops_nothing(reactor: Any, data_path: str) -> None:
    a = listen(reactor, NamedEcho, name=b"A")
    b = listen(reactor, NamedEcho, name=b"B")
    snap_a = explicit({"half.test": [("127.0.0.1", a.getHost().port, 1)]})
    snap_b = explicit({"half.test": [("127.0.0.1", b.getHost().port, 1)]})
    svc = await start_gateway(reactor, snap_a, data_path)
    try:
        events = [threading.Event() for _ in range(6)]
        runs = [threads.deferToThread(stream, svc.address, 150, e) for e in events]
        await wait_for(lambda: all(e.is_set() for e in events))
        for i in range(30):
            svc.set_snapshot(snap_b if i % 2 == 0 else snap_a)
            await task.deferLater(reactor, 0.005, lambda: None)
        svc.set_snapshot(snap_b)
        results = await defer.gatherResults(runs)
        assert all(name == b"A" and n == 150 * 32768 for name, n in results)
        new = await threads.deferToThread(stream, svc.address, 1, threading.Event())
        assert new[0] == b"B"
        assert (svc.loop is not None) is data_path.startswith("loop")
        if data_path == "loop2":
            assert len(svc.loops) == 2
    finally:
        await svc.stopService()
        await a.stopListening()
        await b.stopListening()


@pytest_twisted.ensureDeferred
async def test_routes_file_edit_is_picked_up(reactor: Any, tmp_path: Any) -> None:
    a = listen(reactor, NamedEcho, name=b"A")
    b = listen(reactor, NamedEcho, name=b"B")
    path = tmp_path / "routes.json"

    def write(port: int) -> None:
        path.write_text(
            json.dumps(
                {
                    "clusters": [
                        {"name": "c", "endpoints": [{"address": "127.0.0.1", "port": port}]}
                    ],
                    "filter_chains": [
                        {"server_names": ["half.test"], "cluster": "c", "stat_prefix": "t"}
                    ],
                }
            )
        )

    write(a.getHost().port)
    from wanfedtx.gateway.routes import load_routes

    svc = GatewayService(
        reactor,
        ("127.0.0.1", 0),
        load_routes(path, "127.0.0.1", 0),
        routes_path=path,
        reload_interval=0.05,
    )
    svc.startService()
    try:
        first = await threads.deferToThread(stream, svc.address, 1, threading.Event())
        assert first[0] == b"A"
        write(b.getHost().port)
        import os

        os.utime(path, ns=(0, 10**18))  # a distinct mtime even on coarse clocks
        await wait_for(lambda: svc.snapshot.endpoints_of("c")[0].port == b.getHost().port)  # type: ignore[index]
        second = await threads.deferToThread(stream, svc.address, 1, threading.Event())
        assert second[0] == b"B"
    finally:
        await svc.stopService()
        await a.stopListening()
        await b.stopListening()


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met in time")


def silent_then_closed(gw: tuple[str, int]) -> bool:
    """Send half a hello, then wait for the gateway to close (socket timeout 10 s)."""
    with socket.create_connection(gw, timeout=10) as s:
        s.sendall(HELLO[:20])
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.mark.parametrize("data_path", [p for p in PATHS if p != "loop2"])  # limit is per worker
@pytest_twisted.ensureDeferred
async def test_hello_deadline_and_connection_limit(reactor: Any, data_path: str) -> None:
    live = listen(reactor, NamedEcho, name=b"L")
    snap = explicit({"half.test": [("127.0.0.1", live.getHost().port, 1)]})
    svc = GatewayService(
        reactor,
        ("127.0.0.1", 0),
        snap,
        settings=settings_for(data_path, hello_timeout=0.3, max_connections=2),
    )
    svc.startService()
    lkey = f"listener.127.0.0.1_{svc.address[1]}"
    try:
        assert await threads.deferToThread(silent_then_closed, svc.address)
        assert svc.stats.value(f"{lkey}.downstream_pre_cx_timeout") == 1
        holders = [socket.create_connection(svc.address, timeout=10) for _ in range(2)]
        await wait_for(lambda: svc.stats.value(f"{lkey}.downstream_cx_active") == 2)
        assert await threads.deferToThread(closed_without_reply, svc.address, HELLO)
        assert svc.stats.value(f"{lkey}.downstream_cx_overflow") == 1
        for h in holders:
            h.close()
        await wait_for(lambda: svc.stats.value(f"{lkey}.downstream_cx_active") == 0)
    finally:
        await svc.stopService()
        await live.stopListening()


@pytest.mark.parametrize("data_path", [p for p in PATHS if p != "twisted"])
@pytest_twisted.ensureDeferred
async def test_small_pipes_never_strand_bytes(reactor: Any, data_path: str) -> None:
    """Small pipes force many pump rounds per burst; no byte may be left in a pipe."""
    echo = listen(reactor, NamedEcho, name=b"E")
    snap = explicit({"half.test": [("127.0.0.1", echo.getHost().port, 1)]})
    svc = GatewayService(
        reactor, ("127.0.0.1", 0), snap, settings=settings_for(data_path, pipe_size=4096)
    )
    svc.startService()
    try:
        name, n = await threads.deferToThread(stream, svc.address, 24, threading.Event(), 1 << 20)
        assert (name, n) == (b"E", 24 << 20)
    finally:
        await svc.stopService()
        await echo.stopListening()
