"""The composition root (``Agent``): collaborators reach each part as constructor arguments.

Built on a memory reactor (nothing listens): the test reads what each part was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load


def server_config(tmp: Path, **flags: Any) -> Any:
    base: dict[str, Any] = {"node_name": "sec", "datacenter": "secondary",
                            "primary_datacenter": "primary", "server": True,
                            "data_dir": str(tmp / "data")}
    base.update(flags)
    return load(LoadOptions(dev=True, flags=base)).runtime


def test_wan_federation_server_parts_share_their_collaborators(tmp_path: Path) -> None:
    rt = server_config(
        tmp_path,
        connect={"enabled": True, "enable_mesh_gateway_wan_federation": True},
        primary_gateways=["127.0.0.1:4431"],
    )
    stops: list[str] = []
    agent = Agent(rt, MemoryReactorClock(), request_shutdown=lambda: stops.append("stop"))
    assert agent.raft is not None and agent.wanfed is not None and agent.locator is not None
    assert agent.forwarder is not None and agent.pool is not None
    # One router: gossip feeds it, the RPC forwarder reads it.
    assert agent.forwarder.router is agent.gossip.router
    # Raft learns LAN servers from gossip; federation routines wake on WAN joins.
    assert agent.gossip.on_lan_server == agent.raft.server_discovered
    assert agent.gossip.on_wan_server_joined is not None
    # The WAN pool is built with the wanfed wrapper; RPC dials resolve gateways by the locator.
    assert agent.gossip.wan is not None
    assert agent.gossip.wan.wrap_transport == agent.wanfed.wrap
    assert agent.pool.dialer.gateway_resolver is agent.locator
    assert agent.primary_join is not None
    agent.request_shutdown()
    assert stops == ["stop"]
    names = [s.name for s in agent]
    assert names == ["gossip", "rpc", "raft", None, "catalog", "reconcile", "federation",
                     "connect_ca", "acl", "gateway_locator", "primary_join", "http"]
    # the Connect CA shares the catalog's FSM and local RPC table
    assert agent.connect_ca is not None and agent.catalog is not None
    assert agent.connect_ca.catalog is agent.catalog
    assert "ConnectCA.Sign" in agent.catalog.handlers


def test_without_wan_federation_nothing_is_wrapped_or_resolved(tmp_path: Path) -> None:
    agent = Agent(server_config(tmp_path), MemoryReactorClock())
    assert agent.wanfed is None and agent.locator is None and agent.primary_join is None
    assert agent.pool is not None and agent.pool.dialer.gateway_resolver is None
    assert agent.gossip.wan is not None and agent.gossip.wan.wrap_transport is None
    assert agent.gossip.on_wan_server_joined is None
    assert agent.request_shutdown == agent.stop
