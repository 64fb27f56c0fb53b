"""Test support for the gateway's loop data path on real sockets: a ``RelayLoop`` routing one
SNI to a local backend (driven by hand, batch by batch: its thread is never started) and a
connected non-blocking TCP pair."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from wanfedtx.gateway import relaynative
from wanfedtx.gateway.conn import RelaySettings
from wanfedtx.gateway.loop import RelayLoop
from wanfedtx.gateway.router import RouteTable
from wanfedtx.gateway.routes import routes_to_snapshot
from wanfedtx.gateway.stats import GatewayStats


def require_compiled_relay() -> None:
    """Skip where the compiled relay was not built; where CI runs it must be (fail)."""
    if not relaynative.available():
        assert os.environ.get("CI") != "true", "the compiled relay must be built where CI runs"
        pytest.skip("the compiled relay was not built here")


def relay_loop_to(
    backend_port: int,
    sni: str,
    loop_relay: str = "python",
    address: str = "127.0.0.1",
    **settings: Any,
) -> RelayLoop:
    """A loop listening on 127.0.0.1 (port 0) that routes ``sni`` to ``address:backend_port``;
    relaying with the Python pumps unless ``loop_relay`` says otherwise (``c``: skipped where
    the compiled relay was not built, see :func:`require_compiled_relay`)."""
    if loop_relay == "c":
        require_compiled_relay()
    snap = routes_to_snapshot(
        {
            "clusters": [{"name": sni, "endpoints": [{"address": address,
                                                      "port": backend_port}]}],
            "filter_chains": [{"server_names": [sni], "cluster": sni, "stat_prefix": "t"}],
        },
        "127.0.0.1",
        0,
    )
    return RelayLoop(MemoryReactorClock(), ("127.0.0.1", 0), RouteTable(snap), GatewayStats(),
                     RelaySettings(data_path="loop", loop_relay=loop_relay, **settings))


def loop_turn(loop: RelayLoop, timeout: float = 0.05) -> None:
    """One turn of a hand-driven loop, through the compiled relay if it has one."""
    fd = loop.sock.fileno()
    if loop._native is None:
        loop._dispatch(loop._ep.poll(timeout), fd)
        return
    events, done = loop._native.poll(timeout)
    loop._dispatch(events, fd)
    if done:
        loop._native.finish(done, loop._handle)


def close_relay_loop(loop: RelayLoop) -> None:
    """Tear down every connection of a hand-driven loop and close its descriptors."""
    if loop._native is not None:
        loop._native.close_all(loop._handle)
    for c in list(loop._conns):
        loop._teardown(c)
    loop._ep.close()
    loop.sock.close()
    loop._pipes.close()
    loop._loop.wake.close()
    loop._resolver.shutdown()


def backend_listener(backlog: int = 128) -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 (port 0) for the loop to dial; closed after."""
    ls = socket.create_server(("127.0.0.1", 0), backlog=backlog)
    yield ls
    ls.close()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected non-blocking TCP sockets on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as ls:
        a = socket.create_connection(ls.getsockname())
        b, _ = ls.accept()
    for s in (a, b):
        s.setblocking(False)
    return a, b
