"""The IngestionAware seam: streams and packets that arrive out of band (as the wanfed ALPN
handlers will deliver them) reach the memberlist core through NetTransport.ingest_*."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.protocol import Factory

from wanfedtx.gossip import wire
from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.memberlist import Delegate, Memberlist
from wanfedtx.gossip.transport import NetTransport

pytestmark = pytest.mark.integration


class Msgs(Delegate):
    def __init__(self) -> None:
        self.msgs: list[bytes] = []

    def notify_msg(self, data: bytes) -> None:
        self.msgs.append(data)


def node(reactor: Any, name: str) -> tuple[Memberlist, NetTransport, Msgs]:
    t = NetTransport(reactor, "127.0.0.1", 0)
    port = t.listen()
    cfg = local_config(name)
    cfg.bind_addr, cfg.bind_port = "127.0.0.1", port
    cfg.require_node_names = True
    d = Msgs()
    ml = Memberlist(cfg, t, reactor, random.Random(), d)
    ml.start()
    return ml, t, d


@pytest_twisted.ensureDeferred
async def test_ingest_stream_and_packet(reactor: Any) -> None:
    a, ta, da = node(reactor, "a.dc1")
    b, _tb, _db = node(reactor, "b.dc2")
    # A side door (like the :8300 ALPN listener) that hands raw streams to the transport.
    side = reactor.listenTCP(0, Factory.forProtocol(ta.ingest_stream), interface="127.0.0.1")
    try:
        n = await b.join([f"a.dc1/127.0.0.1:{side.getHost().port}"])
        assert n == 1
        assert {m.name for m in b.members()} == {"a.dc1", "b.dc2"}
        for _ in range(100):
            if "b.dc2" in {m.name for m in a.members()}:
                break
            await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
        assert "b.dc2" in {m.name for m in a.members()}
        # A packet delivered out of band (e.g. a framed gateway packet) is processed too.
        ta.ingest_packet(b"\x08side-door", ("192.0.2.9", 4444), reactor.seconds())
        assert da.msgs == [b"side-door"]
        ta.ingest_packet(wire.compress_message(b"\x08lzw"), ("192.0.2.9", 1), reactor.seconds())
        assert da.msgs[-1] == b"lzw"
    finally:
        await side.stopListening()
        await a.shutdown()
        await b.shutdown()
