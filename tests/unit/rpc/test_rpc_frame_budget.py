"""The RPC port's shared budget for unfinished request frames."""

from __future__ import annotations

import struct

from twisted.internet.testing import StringTransport

from wanfedtx.framebudget import FrameBudget
from wanfedtx.rpc.codec import FrameDecoder, encode_request
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.errors import FrameError
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.rpc.protocol import RPCHandler


def _partial(declared: int, sent: int) -> bytes:
    return struct.pack(">I", declared) + b"\x00" * sent


def test_decoders_share_the_budget_and_give_it_back() -> None:
    budget = FrameBudget(1000)
    a, b = FrameDecoder(10_000, budget), FrameDecoder(10_000, budget)
    assert a.feed(_partial(5000, 600)) == [] and a.failed is None
    assert budget.used == 604  # the length prefix counts too
    assert b.feed(_partial(5000, 600)) == []
    assert isinstance(b.failed, FrameError) and "does not fit the budget" in str(b.failed)
    assert budget.used == 604  # the refused decoder holds nothing
    a.close()
    assert budget.used == 0


def test_a_completed_frame_releases_its_bytes() -> None:
    budget = FrameBudget(1 << 20)
    d = FrameDecoder(1 << 20, budget)
    frame = encode_request(1, "Status.Ping", {})
    assert d.feed(frame[:-1]) == []
    assert budget.used == len(frame) - 1
    [msg] = d.feed(frame[-1:])
    assert msg.method == "Status.Ping" and budget.used == 0


def test_connections_over_the_budget_are_closed_and_release_on_close() -> None:
    budget = FrameBudget(4 * (1024 * 1024 + 4))
    handler = RPCHandler(default_endpoints(), multi=True, budget=budget)
    protos, transports = [], []
    for _ in range(8):  # eight connections each declaring 16 MiB and sending 1 MiB of it
        t = StringTransport()
        p = handler.build_protocol(ConnectionInfo(t, 4, None, tls=False))
        p.makeConnection(t)
        p.dataReceived(_partial(16 * 1024 * 1024 - 1, 1024 * 1024))
        protos.append(p)
        transports.append(t)
    assert budget.peak <= budget.limit
    assert sum(t.disconnecting for t in transports) == 4
    for p in protos:
        p.connectionLost(None)  # type: ignore[arg-type]
    assert budget.used == 0
