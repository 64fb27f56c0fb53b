"""The catalog on a single-server raft (durable log + snapshots): a restart keeps everything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.fsm.machine import FSM
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import MemoryNetwork

pytestmark = pytest.mark.integration


async def start(reactor: Any, data_dir: Path, snapshot_threshold: int) -> CatalogAgent:
    fsm = FSM()
    raft = RaftService(  # one voter: it has nobody to talk to
        node_id="127.0.0.1:8300",
        data_dir=str(data_dir),
        fsm=fsm,
        transport=MemoryNetwork(reactor).transport("127.0.0.1:8300"),
        reactor=reactor,
        bootstrap_expect=1,
        snapshot_threshold=snapshot_threshold,
    )
    agent = CatalogAgent(
        node_name="pri",
        datacenter="primary",
        advertise_addr="127.0.0.1",
        server_port=8300,
        reactor=reactor,
        fsm=fsm,
        consensus=raft,
        services=[{"name": "web", "port": 80}],
    )
    raft.setServiceParent(agent)  # type: ignore[no-untyped-call]
    agent.startService()
    for _ in range(500):
        if raft.is_leader() and agent.local.services["web"].in_sync:
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert raft.is_leader(), "the single server never became leader"
    return agent


@pytest.mark.parametrize("snapshot_threshold", [8192, 5])
@pytest_twisted.ensureDeferred
async def test_restart_keeps_kv_and_catalog(
    reactor: Any, tmp_path: Path, snapshot_threshold: int
) -> None:
    agent = await start(reactor, tmp_path, snapshot_threshold)
    try:
        for i in range(20):
            ok = await agent.rpc(
                "KVS.Apply", {"Op": "set", "DirEnt": {"Key": f"k/{i}", "Value": b"v%d" % i}}
            )
            assert ok is True
        await agent.rpc("KVS.Apply", {"Op": "delete", "DirEnt": {"Key": "k/0"}})
        before = list(agent.fsm.state.snapshot_records())
    finally:
        await agent.stopService()
    agent = await start(reactor, tmp_path, snapshot_threshold)
    try:
        reply = await agent.rpc("KVS.List", {"Key": "k/"})
        assert [e["Key"] for e in reply["Entries"]] == sorted(f"k/{i}" for i in range(1, 20))
        reply = await agent.rpc("Catalog.ServiceNodes", {"ServiceName": "consul"})
        assert [n["Node"] for n in reply["ServiceNodes"]] == ["pri"]
        assert list(agent.fsm.state.snapshot_records()) == before
    finally:
        await agent.stopService()
