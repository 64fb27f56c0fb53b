"""Test support for raft over real sockets: a msgpack key/value FSM, polling with a deadline and
finding the current leader among a list of servers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import msgpack
from twisted.internet.task import deferLater

from wanfedtx.raft.service import RaftService


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
