"""Three RaftServices on 127.0.0.1 talking through real RPC ports (type byte 1), with the
threaded fsync writer: replication, leader loss, restart from disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_twisted
from raft_support import KV, RaftPortServer, leader, wait_for
from twisted.internet.defer import DeferredList

from wanfedtx.metrics import Registry
from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.transport import InboundRaftProtocol
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.testing.pki import PKI
from wanfedtx.tls.configurator import TLSConfigurator

pytestmark = pytest.mark.integration


class Server(RaftPortServer):
    def __init__(self, reactor: Any, tmp: Path, tls: TLSConfigurator | None,
                 alpn: bool = False) -> None:
        super().__init__(reactor, tmp, tls)
        self.alpn = alpn
        self.names: dict[str, str] = {}

    def start(self, peers: list[str]) -> None:
        self.fsm = KV()
        self.start_raft(
            peers, bootstrap_expect=3,
            options=RaftOptions(election_timeout=0.3, heartbeat_interval=0.05),
            snapshot_threshold=40, trailing_logs=10, metrics=Registry(),
            native_tls=self.alpn, node_names=self.names)


@pytest.mark.parametrize("mode", ["plain", "tls", "alpn"])
@pytest_twisted.ensureDeferred
async def test_three_servers_over_rpc_port(reactor: Any, tmp_path: Path, mode: str) -> None:
    """plain: type byte 1; tls: type 3 + TLS + inner type 1; alpn: native TLS, ALPN consul/raft."""
    use_tls = mode != "plain"
    pki = PKI()
    servers = [Server(reactor, tmp_path, TLSConfigurator(pki.settings("dc1", f"s{i}"))
                      if use_tls else None, alpn=mode == "alpn") for i in range(3)]
    peers = [s.addr for s in servers]
    for s in servers:
        s.names.update({x.addr: f"s{i}" for i, x in enumerate(servers)})
    try:
        for s in servers:
            s.start(peers)
        await wait_for(reactor, lambda: leader(servers) is not None)
        if use_tls:
            # verify_incoming: a plaintext raft connection (type byte 1) is refused
            rogue = InboundRaftProtocol(lambda: None)
            plain = Dialer(reactor, "dc1", server=True, tls=None, timeout=2.0)
            await plain.dial_directly("dc1", "", servers[0].addr, RPCType.RAFT, False, rogue)
            await wait_for(reactor, lambda: rogue.transport is None or not getattr(
                rogue.transport, "connected", True))
        ld = leader(servers)
        assert ld is not None and ld.svc is not None
        ds = [ld.svc.apply(msgpack.packb([f"k{i}", f"v{i}"])) for i in range(100)]
        res = await DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)
        assert len(res) == 100
        assert ld.svc.fsync_batches < 60, "group commit should batch the 100 concurrent writes"
        await wait_for(reactor, lambda: all(s.fsm.data == ld.fsm.data for s in servers))
        # kill the leader; the others elect a new one and keep every write
        await ld.stop()
        rest = [s for s in servers if s is not ld]
        await wait_for(reactor, lambda: leader(rest) is not None)
        ld2 = leader(rest)
        assert ld2 is not None and ld2.svc is not None
        await ld2.svc.apply(msgpack.packb(["after", "x"]))
        assert ld2.fsm.data["k99"] == "v99" and ld2.fsm.data["after"] == "x"
        # restart everything else from disk: committed state is back
        for s in rest:
            await s.stop()
        for s in rest:
            s.start(peers)
        await wait_for(reactor, lambda: leader(rest) is not None)
        await wait_for(reactor, lambda: all(s.fsm.data.get("after") == "x" for s in rest))
        assert all(len(s.fsm.data) == 101 for s in rest)
    finally:
        for s in servers:
            await s.stop()
            await s.port.stopListening()
