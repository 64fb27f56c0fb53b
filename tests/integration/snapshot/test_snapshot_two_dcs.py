"""``?dc=secondary``: a save asked in the primary is forwarded to the secondary's server through
an SNI gateway (native TLS, ALPN ``consul/rpc-snapshot``, SNI ``<node>.server.<dc>.consul``),
which answers with its own state; a secondary without a route is ``No path to datacenter``."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from two_dc_support import ServerDC, start_gateway, start_server_dc

from wanfedtx.fsm.commands import KVS_SET, MessageType, encode
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.forward import StaticLeader, StaticRouter
from wanfedtx.rpc.interfaces import ServerAddress
from wanfedtx.snapshot.archive import read_archive
from wanfedtx.snapshot.client import SnapshotForwarder
from wanfedtx.snapshot.server import SnapshotHandler, SnapshotServer
from wanfedtx.snapshot.server import log as snapshot_log
from wanfedtx.state import StateStore
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration


def _snapshots(reactor: Any, dc: ServerDC, other: tuple[str, str]) -> SnapshotServer:
    other_dc, other_node = other
    forward = SnapshotForwarder(
        dc.pool.dialer, reactor, dc.name,
        StaticLeader(ServerAddress(dc.node, dc.rpc_addr), dc.node),
        StaticRouter({other_dc: [ServerAddress(other_node, "192.0.2.1:8300")]}),
        max_archive=1 << 24)
    server = SnapshotServer(datacenter=dc.name, fsm=dc.agent.fsm, consensus=dc.agent.consensus,
                            forward=forward, resolver=None, clock=reactor,
                            max_restore_bytes=1 << 22)
    server.register_fsm()
    registry: Any = dc.rpc_service.factory.registry  # type: ignore[attr-defined]
    registry.register(RPCType.SNAPSHOT, SnapshotHandler(
        server, RateLimitedLog(snapshot_log, reactor), max_archive=1 << 22))
    return server


@pytest_twisted.ensureDeferred
async def test_save_of_the_secondary_through_the_gateway(reactor: Any) -> None:
    ca = PKI()
    gateway = start_gateway(reactor)
    pri = await start_server_dc(reactor, ca, "primary", "pri", ("secondary", "sec"),
                                gateway.address)
    sec = await start_server_dc(reactor, ca, "secondary", "sec", ("primary", "pri"),
                                gateway.address)
    gateway.route(pri)
    gateway.route(sec)
    try:
        pri_snap = _snapshots(reactor, pri, ("secondary", "sec"))
        _snapshots(reactor, sec, ("primary", "pri"))
        for dc, key in ((pri, "only-in-primary"), (sec, "only-in-secondary")):
            await dc.agent.consensus.apply(encode(MessageType.KVS, {
                "Op": KVS_SET, "DirEnt": {"Key": key, "Value": dc.name.encode()}}))
        header = {"Datacenter": "secondary", "Token": "", "AllowStale": False, "Op": 0}
        reply, archive = await pri_snap.handle(header, b"")
        assert reply["Error"] == "", reply
        meta, state = read_archive(archive)
        assert reply["Index"] == meta.index == sec.agent.fsm.last_applied
        store = StateStore()
        store.restore_chunks([state])
        keys = {r["Key"]: r["Value"] for r in store.tables["kvs"].all()}
        assert keys == {"only-in-secondary": b"secondary"}
        assert "sec.server.secondary.consul" in gateway.router.seen

        reply, archive = await pri_snap.handle({**header, "Datacenter": "tertiary"}, b"")
        assert (reply["Error"], archive) == ("No path to datacenter", b"")
    finally:
        await sec.stop()
        await pri.stop()
        await gateway.port.stopListening()
