"""Stopping the gateway's admin service closes its open keep-alive connections too."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from wanfedtx.gateway.admin import AdminRoot
from wanfedtx.gateway.service import AdminService
from wanfedtx.gateway.snapshot import Snapshot
from wanfedtx.gateway.stats import GatewayStats


class KeepAlive(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.answered: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"LIVE" in self.data and not self.answered.called:
            self.answered.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_stop_closes_keep_alive_admin_connections(reactor: Any) -> None:
    stats = GatewayStats()
    admin = AdminService(reactor, ("127.0.0.1", 0),
                         AdminRoot(lambda: Snapshot((), (), {}), lambda: stats))
    admin.startService()
    client = KeepAlive()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", admin.address[1]), client)
    client.transport.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    await client.answered
    assert not client.closed.called  # the server keeps the connection open
    await admin.stopService()
    # the server side is closed now; the client hears it within a reactor turn or two
    await client.closed.addTimeout(5, reactor)
