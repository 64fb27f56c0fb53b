"""py-consul and plain HTTP against a real ``wanfed`` Agent built from config files on 127.0.0.1.

The agent is the one ``wanfed agent`` runs (``wanfedtx.agent.agent.Agent``) with the
``case-wanfed-gw`` gateway.hcl service block; the catalog runs on ``LocalConsensus``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import consul
import pytest
import pytest_twisted
import treq
from agent_support import http_on_port_zero
from netutil import free_port
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration

GATEWAY_HCL = """
services {
  name = "mesh-gateway"
  kind = "mesh-gateway"
  port = 4431
  meta {
    consul-wan-federation = "1"
  }
}
"""



@pytest_twisted.ensureDeferred
async def test_real_agent_catalog_kv_and_gateway_service(reactor: Any, tmp_path: Path) -> None:
    gw = tmp_path / "gateway.hcl"
    gw.write_text(GATEWAY_HCL)
    flags = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "node_name": "pri",
        "datacenter": "primary",
    }
    rt = http_on_port_zero(load(LoadOptions(dev=True, config_files=[str(gw)], flags=flags)).runtime)
    agent = Agent(rt, reactor)
    agent.startService()
    (url,) = agent.http_urls()
    port = int(url.rsplit(":", 1)[1])
    c = consul.Consul(host="127.0.0.1", port=port)
    try:
        # What case-wanfed-gw's setup.sh curls: the server is service "consul" on its RPC port
        # (:8300 there; a free port here).
        r = await treq.get(url + "/v1/catalog/service/consul")
        body = await r.json()
        assert r.code == 200 and r.headers.getRawHeaders("X-Consul-Index")
        assert [(s["Node"], s["ServicePort"], s["Address"]) for s in body] == [
            ("pri", rt.server_port, "127.0.0.1")
        ]
        # The config-file gateway reaches the catalog through anti-entropy.
        for _ in range(200):
            _, gws = await deferToThread(c.catalog.service, "mesh-gateway")
            if gws:
                break
            await deferLater(reactor, 0.02, lambda: None)
        [gw_entry] = gws
        assert (gw_entry["ServiceKind"], gw_entry["ServicePort"]) == ("mesh-gateway", 4431)
        assert gw_entry["ServiceMeta"] == {"consul-wan-federation": "1"}
        _, healthy = await deferToThread(c.health.service, "consul", passing=True)
        assert [h["Node"]["Node"] for h in healthy] == ["pri"]
        # KV on the real agent, and dc= for a DC it cannot reach.
        assert await deferToThread(c.kv.put, "foo", '{"Value":"bar"}') is True
        _, entry = await deferToThread(c.kv.get, "foo")
        assert entry["Value"] == b'{"Value":"bar"}'
        with pytest.raises(consul.ConsulException, match="No path to datacenter"):
            await deferToThread(c.kv.put, "foo", "x", dc="secondary")
        # /v1/agent/self is still served next to the state routes.
        r = await treq.get(url + "/v1/agent/self")
        assert r.code == 200 and (await r.json())["Config"]["NodeName"] == "pri"
        services = await deferToThread(c.agent.services)
        assert services["mesh-gateway"]["Port"] == 4431
    finally:
        c.http.session.close()
        await agent.stop()


@pytest_twisted.ensureDeferred
async def test_real_agent_restart_keeps_kv_and_catalog(reactor: Any, tmp_path: Path) -> None:
    """A single server with a data dir runs on raft: stop, start again, the data is there."""
    flags = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "node_name": "pri",
        "datacenter": "primary",
        "server": True,
        "bootstrap_expect": 1,
        "data_dir": str(tmp_path / "data"),
    }

    async def start() -> tuple[Agent, consul.Consul]:
        rt = http_on_port_zero(load(LoadOptions(flags=flags)).runtime)
        agent = Agent(rt, reactor)
        agent.startService()
        (url,) = agent.http_urls()
        c = consul.Consul(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        for _ in range(500):  # until raft elected this server and it registered itself
            assert agent.catalog is not None
            if agent.catalog.consensus.is_leader() and agent.catalog.fsm.state.list_nodes(None)[1]:
                break
            await deferLater(reactor, 0.01, lambda: None)
        return agent, c

    agent, c = await start()
    try:
        assert await deferToThread(c.kv.put, "persist/me", "yes") is True
        await deferToThread(
            c.catalog.register, "ext", "127.0.0.9", service={"Service": "db", "Port": 5432}
        )
        index, _ = await deferToThread(c.kv.get, "persist/me")
    finally:
        c.http.session.close()
        await agent.stop()
    agent, c = await start()
    try:
        new_index, entry = await deferToThread(c.kv.get, "persist/me")
        assert entry["Value"] == b"yes" and int(new_index) >= int(index)
        _, dbs = await deferToThread(c.catalog.service, "db")
        assert [(d["Node"], d["ServicePort"]) for d in dbs] == [("ext", 5432)]
        _, servers = await deferToThread(c.catalog.service, "consul")
        assert [s["Node"] for s in servers] == ["pri"]
    finally:
        c.http.session.close()
        await agent.stop()
