"""Test support for raft over real sockets: a msgpack key/value FSM, a raft server on its own RPC
port on 127.0.0.1, polling with a deadline and finding the current leader among servers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgpack
from twisted.internet.task import deferLater

from wanfedtx.raft.service import RaftService
from wanfedtx.raft.wiring import raft_on_rpc_port
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.tls.configurator import TLSConfigurator


class KV:
    """FSM: each command is a msgpack [key, value] pair; snapshots are one msgpack dict."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, index: int, data: bytes) -> Any:
        k, v = msgpack.unpackb(data)
        self.data[k] = v
        return index

    def snapshot(self) -> Any:
        yield msgpack.packb(self.data)

    def restore(self, chunks: Any, last_index: int = 0) -> None:
        self.data = {}
        for c in chunks:
            self.data.update(msgpack.unpackb(c))


class RaftPortServer:
    """An RPC port of datacenter dc1 listening on 127.0.0.1 (port 0) with its dialer; ``start_raft``
    runs a RaftService on it whose data directory is named after the address."""

    def __init__(self, reactor: Any, tmp: Path, tls: TLSConfigurator | None = None) -> None:
        self.reactor = reactor
        self.tmp = tmp
        self.tls = tls
        self.reg = HandlerRegistry()
        self.port = reactor.listenTCP(0, RPCPortFactory(self.reg, reactor, tls),
                                      interface="127.0.0.1")
        self.addr = f"127.0.0.1:{self.port.getHost().port}"
        self.dialer = Dialer(reactor, "dc1", server=True, tls=tls, timeout=2.0)
        self.svc: RaftService | None = None
        self.fsm = KV()

    def start_raft(self, peers: list[str], **kw: Any) -> None:
        """Start raft on this port with ``peers``; ``kw`` goes to ``raft_on_rpc_port``."""
        self.svc = raft_on_rpc_port(
            advertise=self.addr, data_dir=str(self.tmp / self.addr.replace(":", "_")),
            fsm=self.fsm, registry=self.reg, dialer=self.dialer, reactor=self.reactor,
            peers=peers, rng=random.Random(), **kw)
        self.svc.startService()

    async def stop(self) -> None:
        """Stop the raft service (the port keeps listening, for a restart)."""
        if self.svc is not None:
            svc, self.svc = self.svc, None
            await svc.stopService()


async def wait_for(reactor: Any, pred: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `pred` every 20 ms until it holds; AssertionError past the deadline."""
    deadline = reactor.seconds() + timeout
    while not pred():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met in time")
        await deferLater(reactor, 0.02, lambda: None)


class HasService(Protocol):
    svc: RaftService | None


S = TypeVar("S", bound=HasService)


def leader(servers: Sequence[S]) -> S | None:
    """The first server whose service is running and leads, or None."""
    ls = [s for s in servers if s.svc is not None and s.svc.is_leader()]
    return ls[0] if ls else None
