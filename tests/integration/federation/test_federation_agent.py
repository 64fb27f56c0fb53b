"""Federation states on a real ``wanfed`` Agent on 127.0.0.1 (dev mode, wanfed enabled).

Anti-entropy records the primary's mesh gateway (from the config's ``case-wanfed-gw`` service
block, synced to the catalog by the agent's own anti-entropy) in its federation state, and the
internal HTTP APIs show it, as the reference's ``TestAgent_JoinWAN_viaMeshGateway`` polls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import http_on_port_zero
from netutil import free_port
from twisted.internet.task import deferLater

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration

CONFIG_HCL = """
connect {
  enabled = true
  enable_mesh_gateway_wan_federation = true
}
services {
  name = "mesh-gateway"
  kind = "mesh-gateway"
  port = 4431
  meta {
    consul-wan-federation = "1"
  }
}
"""



async def _get(url: str) -> tuple[int, bytes, Any]:
    r = await treq.get(url)
    body = await r.content()
    return r.code, body, r.headers


@pytest_twisted.ensureDeferred
async def test_agent_records_and_serves_its_federation_state(reactor: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "wanfed.hcl"
    cfg.write_text(CONFIG_HCL)
    flags = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "node_name": "pri",
        "datacenter": "primary",
    }
    rt = load(LoadOptions(dev=True, config_files=[str(cfg)], flags=flags)).runtime
    rt = http_on_port_zero(rt)
    assert rt.connect_mesh_gateway_wan_federation_enabled
    agent = Agent(rt, reactor)
    agent.startService()
    (url,) = agent.http_urls()
    try:
        state: dict[str, Any] = {}
        for _ in range(200):
            code, body, _ = await _get(url + "/v1/internal/federation-state/primary")
            if code == 200:
                state = json.loads(body)
                if len(state["State"].get("MeshGateways", [])) == 1:
                    break
            await deferLater(reactor, 0.05, lambda: None)
        gw = state["State"]["MeshGateways"][0]
        assert gw["Service"]["Port"] == 4431 and gw["Node"]["Node"] == "pri"
        assert state["ConsistencyLevel"] == "leader" and state["KnownLeader"] is True
        code, body, headers = await _get(url + "/v1/internal/federation-states")
        assert code == 200 and [s["Datacenter"] for s in json.loads(body)] == ["primary"]
        index = int(headers.getRawHeaders("X-Consul-Index")[0])
        code, body, _ = await _get(url + "/v1/internal/federation-states/mesh-gateways")
        assert code == 200 and list(json.loads(body)) == ["primary"]
        code, body, _ = await _get(url + "/v1/internal/federation-state/nope")
        assert (code, body) == (404, b"")
        code, body, _ = await _get(url + "/v1/internal/federation-state/")
        assert (code, body) == (400, b"Missing datacenter name")
        code, body, _ = await _get(url + "/v1/internal/federation-states?dc=elsewhere")
        assert (code, body) == (500, b"No path to datacenter")
        # ?dc= names the answering server (TargetDatacenter), the path the state.
        code, body, _ = await _get(url + "/v1/internal/federation-state/primary?dc=elsewhere")
        assert (code, body) == (500, b"No path to datacenter")
        code, body, _ = await _get(url + "/v1/internal/federation-state/primary?consistent")
        assert code == 200 and json.loads(body)["ConsistencyLevel"] == "consistent"
        # A blocking list wakes when a second gateway registered in the catalog is pushed.
        answered: list[Any] = []
        waiting = treq.get(url + f"/v1/internal/federation-states?index={index}&wait=30s")
        waiting.addCallback(lambda r: answered.append(r) or r)
        await deferLater(reactor, 0.2, lambda: None)
        assert answered == []
        reg = {
            "Node": "gw2",
            "Address": "127.0.0.3",
            "Service": {"Kind": "mesh-gateway", "Service": "mesh-gateway", "Port": 4432},
        }
        r = await treq.put(url + "/v1/catalog/register", json.dumps(reg).encode())
        assert r.code == 200
        await r.content()
        r = await waiting
        states = json.loads(await r.content())
        assert int(r.headers.getRawHeaders("X-Consul-Index")[0]) > index
        assert len(states[0]["MeshGateways"]) == 2
        # The spec's timers are served by /v1/agent/metrics (Prometheus text and JSON).
        code, body, headers = await _get(url + "/v1/agent/metrics?format=prometheus")
        text = body.decode()
        assert code == 200 and headers.getRawHeaders("Content-Type")[0].startswith("text/plain")
        for line in (
            "consul_federation_state_get_count ",
            "consul_federation_state_list_count ",
            "consul_federation_state_list_mesh_gateways_count ",
            'consul_fsm_federation_state_primary_count{op="upsert"} ',
        ):
            assert line in text, line
        code, body, _ = await _get(url + "/v1/agent/metrics")
        names = {s["Name"] for s in json.loads(body)["Samples"]}
        assert "consul.federation_state.list" in names
        code, body, _ = await _get(url + "/v1/agent/metrics?format=xml")
        assert code == 400
    finally:
        await agent.stop()
