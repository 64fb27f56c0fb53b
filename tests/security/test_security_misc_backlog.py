"""Listen backlogs from ``somaxconn`` (issue 11, item 3) on the gossip and gateway listeners,
not Twisted's default of 50 (5,000 connects took 75-87 s of SYN retries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from wanfedtx import netlimits
from wanfedtx.agent import limits
from wanfedtx.gateway.relay import RelaySettings
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.service import GatewayService
from wanfedtx.gossip.transport import NetTransport

BACKLOG = 12345


@pytest.fixture(autouse=True)
def somaxconn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "somaxconn"
    f.write_text(f"{BACKLOG}\n")
    monkeypatch.setattr(netlimits, "SOMAXCONN", f)
    monkeypatch.setattr(netlimits.listen_backlog, "__defaults__", (f,))


def test_agent_limits_reexports_the_primitive() -> None:
    assert limits.listen_backlog is netlimits.listen_backlog
    assert netlimits.listen_backlog() == BACKLOG


class _WithUDP(MemoryReactorClock):
    """MemoryReactor has no UDP; the gossip transport binds both on one port."""

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 0
    ) -> Any:
        return object()


def test_gossip_tcp_listener_uses_somaxconn() -> None:
    reactor = _WithUDP()
    NetTransport(reactor, "127.0.0.1", 18301).listen()
    assert [backlog for _p, _f, backlog, _i in reactor.tcpServers] == [BACKLOG]


def test_gateway_relay_and_admin_listeners_use_somaxconn() -> None:
    reactor = MemoryReactorClock()
    snap = routes_to_snapshot({"clusters": [], "filter_chains": []}, "127.0.0.1", 4431)
    svc = GatewayService(
        reactor,
        ("127.0.0.1", 4431),
        snap,
        admin=("127.0.0.1", 19000),
        settings=RelaySettings(data_path="twisted"),
        reload_interval=None,
    )
    svc.startService()
    assert [(p, backlog) for p, _f, backlog, _i in reactor.tcpServers] == [
        (4431, BACKLOG),
        (19000, BACKLOG),
    ]
