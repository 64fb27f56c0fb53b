"""Gateway log volume on real sockets, on every data path (the loop path logs from its own
thread): 300 bad connections write at most the per-reason burst."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task, threads
from twisted.logger import LogLevel

from wanfedtx.gateway.pump import splice_available
from wanfedtx.gateway.relay import RelaySettings
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.service import GatewayService
from wanfedtx.ratelog import DEFAULT_BURST

pytestmark = pytest.mark.integration
PATHS = ["twisted"] + (["loop"] if splice_available() else [])
N = 300
SNAP = routes_to_snapshot(
    {"clusters": [], "filter_chains": []},
    "127.0.0.1",
    0,
)


def _bad_connections(addr: tuple[str, int]) -> None:
    for _ in range(N):
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                s.recv(16)
            except ConnectionResetError:
                pass


@pytest.mark.parametrize("data_path", PATHS)
@pytest_twisted.ensureDeferred
async def test_bad_connections_log_a_bounded_number_of_lines(
    reactor: Any, data_path: str, logged: list[dict[str, Any]]
) -> None:
    svc = GatewayService(
        reactor, ("127.0.0.1", 0), SNAP, settings=RelaySettings(data_path=data_path)
    )
    svc.startService()
    try:
        await threads.deferToThread(_bad_connections, svc.address)
        for _ in range(1000):  # the loop thread's lines reach the reactor asynchronously
            if svc.stats.value("tls_inspector.tls_not_found") == N:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        assert svc.stats.value("tls_inspector.tls_not_found") == N
        await task.deferLater(reactor, 0.05, lambda: None)
        lines = [
            e
            for e in logged
            if e.get("log_namespace") == "wanfed.gateway"
            and e["log_level"] != LogLevel.debug
            and "{peer}" in e.get("log_format", "")
        ]
        assert len(lines) == DEFAULT_BURST
        assert all(e["reason"] == "bad-hello" and e["peer"].startswith("127.0.0.1:") for e in lines)
    finally:
        await svc.stopService()
    summary = [e for e in logged if e.get("reason") == "bad-hello" and "count" in e]
    assert [e["count"] for e in summary] == [N - DEFAULT_BURST]
