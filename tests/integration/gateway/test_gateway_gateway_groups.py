"""A gateway without the ``consul-wan-federation`` meta still learns the other datacenter.

Two real server agents (``primary`` and ``secondary``, federated by a plain WAN join, no WAN
federation through gateways) each register a mesh-gateway service without the meta. The
primary's gateway process (``wanfed gateway -proxy-id``) has no federation states to read (it
does not watch them without the meta): it finds ``secondary`` through the agent's datacenters and
that datacenter's mesh-gateway service dump (the reference's ``GatewayGroups``), and shows the
cluster ``secondary.internal.<trust-domain>`` (``<cluster-id>.consul`` from the Connect CA
roots) with the secondary gateway's address as a HEALTHY endpoint. When the secondary's gateway
is deregistered, the cluster goes away.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import http_on_port_zero
from netutil import free_port, wait_for_lines
from twisted.internet import task, threads

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration


def _agent(reactor: Any, tmp: Path, dc: str, gw_addr: str, gw_port: int,
           wan_join: str = "") -> Agent:
    cfg = tmp / f"{dc}.hcl"
    cfg.write_text(
        "connect { enabled = true }\n"
        f'services {{ name = "mesh-gateway" id = "mesh-gateway" kind = "mesh-gateway" '
        f'address = "{gw_addr}" port = {gw_port} }}\n'
    )
    flags: dict[str, Any] = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port(),
                  "dns": -1},
        "node_name": f"s-{dc}",
        "datacenter": dc,
        "primary_datacenter": "primary",
        "retry_interval_wan": "1s",
    }
    if wan_join:
        flags["retry_join_wan"] = [wan_join]
    rt = load(LoadOptions(dev=True, config_files=[str(cfg)], flags=flags)).runtime
    assert not rt.connect_mesh_gateway_wan_federation_enabled
    return Agent(http_on_port_zero(rt), reactor)


async def until(reactor: Any, what: str, check: Callable[[], Awaitable[Any]],
                seconds: float) -> None:
    """Poll ``check`` every 50 ms until it is true; AssertionError once ``seconds`` (reactor
    time, requests included) have passed."""
    deadline = reactor.seconds() + seconds
    while not await check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)


async def _json(url: str) -> tuple[int, Any]:
    r = await treq.get(url)
    body = await r.content()
    return r.code, (json.loads(body) if r.code == 200 else body)


@pytest_twisted.ensureDeferred
async def test_a_gateway_without_the_wanfed_meta_gets_the_remote_datacenter(
    reactor: Any, tmp_path: Path
) -> None:
    gw_port = free_port()
    primary = _agent(reactor, tmp_path, "primary", "127.0.0.1", gw_port)
    primary.startService()
    wan_port = primary.config.serf_port_wan
    secondary = _agent(reactor, tmp_path, "secondary", "127.0.0.2", 4432, f"127.0.0.1:{wan_port}")
    secondary.startService()
    (p_http,) = primary.http_urls()
    (s_http,) = secondary.http_urls()
    proc = None
    try:
        async def federated() -> bool:
            code, dcs = await _json(f"{p_http}/v1/catalog/datacenters")
            return code == 200 and sorted(dcs) == ["primary", "secondary"]

        await until(reactor, "both datacenters known to the primary", federated, 30)

        async def trust_domain() -> str:
            code, roots = await _json(f"{p_http}/v1/agent/connect/ca/roots")
            return str(roots.get("TrustDomain") or "") if code == 200 else ""

        await until(reactor, "the primary's CA roots", trust_domain, 30)
        trust = await trust_domain()
        assert trust.endswith(".consul") and trust != "consul"

        exe = Path(sys.executable).parent / "wanfed"
        proc = subprocess.Popen(
            [str(exe), "gateway", "-proxy-id", "mesh-gateway", "-http-addr", p_http,
             "-admin-bind", "127.0.0.1:0", "-data-path", "twisted", "-log-level", "info"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        (admin_line,), started = await threads.deferToThread(
            wait_for_lines, proc, proc.stderr, r"admin address: 127\.0\.0\.1:(\d+)$", timeout=60
        )
        admin = f"http://127.0.0.1:{admin_line.group(1)}"
        assert "Traceback" not in started
        cluster = f"secondary.internal.{trust}"

        async def endpoints() -> dict[str, Any]:
            code, dump = await _json(f"{admin}/config_dump")
            assert code == 200
            return {e["cluster_name"]: e["endpoints"] for e in dump["endpoints"]}

        async def remote_cluster() -> bool:
            return (await endpoints()).get(cluster) == [
                {"address": "127.0.0.2", "port": 4432, "health": "HEALTHY", "weight": 1}]

        await until(reactor, f"cluster {cluster} with the secondary's gateway", remote_cluster, 30)
        _, dump = await _json(f"{admin}/config_dump")
        assert cluster in [c["name"] for c in dump["clusters"]]
        # no wanfed meta: no server clusters, no federation-state source
        assert not any(".server." in c["name"] or c["name"].startswith("server.")
                       for c in dump["clusters"])
        # the secondary's gateway leaves its catalog: its datacenter leaves the snapshot
        r = await treq.put(f"{s_http}/v1/agent/service/deregister/mesh-gateway")
        assert r.code == 200
        await r.content()

        async def gone() -> bool:
            return cluster not in await endpoints()

        await until(reactor, f"cluster {cluster} removed", gone, 30)
    finally:
        if proc is not None:
            proc.terminate()
            await threads.deferToThread(proc.communicate, None, 20)
        await secondary.stop()
        await primary.stop()
    assert proc is not None and proc.returncode == 0
