# -*- test-case-name: tests.integration.snapshot.test_snapshot_cluster -*-
"""A server agent's snapshots: the dispatch, its raft command, the RPC-port handler, the route.

:func:`build_snapshots` wires :class:`wanfedtx.snapshot.server.SnapshotServer` over the server's
FSM and consensus, forwards to the leader or another datacenter with the agent's dialer (through
the mesh gateways when WAN federation uses them), authorizes with the ACL resolver the RPC
endpoints use, and serves ``consul/rpc-snapshot`` (type byte 5 and the ALPN name) on the RPC port.
A client agent serves ``/v1/snapshot`` by opening a snapshot stream to one of its servers
(:func:`client_snapshot_routes`), as Consul's client agents do.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from wanfedtx.client.errors import NoServers
from wanfedtx.client.router import ServerManager, address_of
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.fsm.machine import FSM
from wanfedtx.http.snapshot import SnapshotRoutes
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.errors import DialError
from wanfedtx.rpc.interfaces import ILeaderProvider, IRouter
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.snapshot.archive import DEFAULT_MAX_SIZE
from wanfedtx.snapshot.client import (
    IDialer,
    Reply,
    SnapshotCallError,
    SnapshotForwarder,
    snapshot_call,
)
from wanfedtx.snapshot.server import IConsensus, SnapshotHandler, SnapshotServer
from wanfedtx.snapshot.server import log as snapshot_log


def build_snapshots(
    rt: RuntimeConfig,
    clock: IReactorTime,
    fsm: FSM,
    consensus: IConsensus,
    dialer: IDialer,
    leader: ILeaderProvider,
    router: IRouter,
    resolver: Any,
    registry: HandlerRegistry | None,
) -> SnapshotServer:
    """The snapshot server of this agent; its raft command and RPC handler are registered."""
    forward = SnapshotForwarder(dialer, clock, rt.datacenter, leader, router,
                                max_archive=DEFAULT_MAX_SIZE)
    server = SnapshotServer(datacenter=rt.datacenter, fsm=fsm, consensus=consensus,
                            forward=forward, resolver=resolver, clock=clock,
                            max_restore_bytes=rt.raft_max_entry_size)
    server.register_fsm()
    if registry is not None:
        handler = SnapshotHandler(server, RateLimitedLog(snapshot_log, clock),
                                  max_archive=rt.raft_max_entry_size)
        registry.register(RPCType.SNAPSHOT, handler)
    return server


def snapshot_routes(rt: RuntimeConfig, server: SnapshotServer) -> SnapshotRoutes:
    """``/v1/snapshot`` over the server's own dispatch."""
    return SnapshotRoutes(rt.datacenter, server.handle, rt.acl_tokens.default)


def client_snapshot_routes(rt: RuntimeConfig, clock: IReactorTime, servers: ServerManager,
                           dialer: IDialer) -> SnapshotRoutes:
    """``/v1/snapshot`` on a client agent: the request goes to a server of this datacenter
    (which forwards it to its leader or to another datacenter as needed)."""

    async def call(header: dict[str, Any], archive: bytes) -> Reply:
        server = servers.find_server()
        if server is None:
            raise NoServers()
        try:
            return await snapshot_call(dialer, clock, rt.datacenter, address_of(server),
                                       header, archive, max_archive=DEFAULT_MAX_SIZE)
        except (DialError, SnapshotCallError) as exc:
            servers.notify_failed_server(server)
            return {"Error": str(exc)}, b""

    return SnapshotRoutes(rt.datacenter, call, rt.acl_tokens.default)
