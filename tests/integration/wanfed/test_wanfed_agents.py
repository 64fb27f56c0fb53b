"""Two real server agents with ``connect.enable_mesh_gateway_wan_federation``: their WAN pools
reach each other only through an SNI-routing gateway, and tunnelled gossip enters through each
agent's own RPC port (ALPN ``consul/wan-gossip/*``).

The secondary finds the primary's gateway from ``primary_gateways`` (its gateway locator's
fallback list) and joins the primary by itself (``*.primary/192.0.2.2``); the primary, which
would learn the secondary's gateway from replicated federation states, is given a resolver for
it through the Agent's ``gateway_resolver`` argument.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import fast_serf, http_on_port_zero
from agent_support import until_value as until
from netutil import free_port
from rpc_support import SNIRouter

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.testing.pki import PKI
from wanfedtx.wanfed.resolver import StaticGatewayResolver

pytestmark = pytest.mark.integration

FAST = {"gossip_interval": "50ms", "probe_interval": "200ms", "probe_timeout": "100ms",
        "suspicion_mult": 3, "retransmit_mult": 3, "gossip_nodes": 3}



def make_agent(reactor: Any, tmp: Path, ca: PKI, node: str, dc: str, host: str,
               resolver: Any = None, **extra: Any) -> Agent:
    d = tmp / node
    d.mkdir()
    (d / "ca.pem").write_bytes(ca.ca_pem)
    cert, key = PKI.write(ca.server(dc, node), d, "server")
    flags: dict[str, Any] = {
        "bind_addr": host, "client_addr": host, "node_name": node, "datacenter": dc,
        "primary_datacenter": "primary", "server": True,
        "ports": {"serf_lan": free_port(host), "serf_wan": free_port(host),
                  "server": free_port(host)},
        "gossip_lan": FAST, "gossip_wan": FAST,
        "connect": {"enabled": True, "enable_mesh_gateway_wan_federation": True},
        "ca_file": str(d / "ca.pem"), "cert_file": str(cert), "key_file": str(key),
    }
    flags.update(extra)
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor, leave_timeout=5.0, serf_tuning=fast_serf, gateway_resolver=resolver)
    agent.startService()
    return agent


async def wan_members(agent: Agent) -> dict[str, int]:
    url = agent.http_urls()[0]
    resp = await treq.get(f"{url}/v1/agent/members?wan=1")
    assert resp.code == 200
    return {m["Name"]: m["Status"] for m in json.loads(await resp.content())}


@pytest_twisted.ensureDeferred
async def test_agents_federate_wan_gossip_through_a_gateway(reactor: Any, tmp_path: Path) -> None:
    ca = PKI()
    router = SNIRouter(reactor)
    gw_port = reactor.listenTCP(0, router, interface="127.0.0.1")
    gw = f"127.0.0.1:{gw_port.getHost().port}"
    pri = make_agent(reactor, tmp_path, ca, "pri", "primary", "127.0.0.2",
                     resolver=StaticGatewayResolver({"secondary": [gw]}, "primary"))
    sec = make_agent(reactor, tmp_path, ca, "sec", "secondary", "127.0.0.3",
                     primary_gateways=[gw])
    router.routes.update({
        "server.primary.consul": f"127.0.0.2:{pri.config.server_port}",
        "pri.server.primary.consul": f"127.0.0.2:{pri.config.server_port}",
        "sec.server.secondary.consul": f"127.0.0.3:{sec.config.server_port}",
    })
    try:
        assert pri.wanfed is not None and sec.wanfed is not None
        # No join is asked for: the secondary joins the primary by its wildcard name.
        want = {"pri.primary": 1, "sec.secondary": 1}
        for ag in (pri, sec):
            await until(lambda ag=ag: _eq(wan_members(ag), want), "WAN members alive")
        await until(lambda: _true("sec.server.secondary.consul" in router.seen),
                    "the primary reaching the secondary through the gateway")
        assert "server.primary.consul" in router.seen
        assert sec.wanfed.transport is not None and pri.wanfed.transport is not None
        # Packets to the other DC travel on pooled gateway connections, keyed by node name.
        st, pt = sec.wanfed.transport, pri.wanfed.transport
        await until(lambda: _true(st.pool.idle_count("pri.primary") >= 1
                                  and pt.pool.idle_count("sec.secondary") >= 1),
                    "pooled packet connections in both directions")
        # The WAN router learnt the other DC from gossip that only crossed the gateway.
        assert [s.name for s in pri.gossip.router.servers_for_dc("secondary")] == ["sec"]
        assert [s.name for s in sec.gossip.router.servers_for_dc("primary")] == ["pri"]
    finally:
        await sec.stop()
        await pri.stop()
        await gw_port.stopListening()


async def _eq(probe: Any, want: Any) -> bool:
    return bool(await probe == want)


async def _true(v: bool) -> bool:
    return v
