"""The Agent service on loopback: /v1/agent/self shape, 404/405, clean stop, node-id file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import http_on_port_zero
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.agent.nodeid import NODE_ID_FILE
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration


def _agent(reactor: Any, data_dir: Path | None = None, **flags: Any) -> Agent:
    # HTTP listens on port 0; gossip and RPC ports must be chosen first (see netutil).
    base: dict[str, Any] = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "node_name": "pri",
        "datacenter": "primary",
    }
    base.update(flags)
    if data_dir is not None:
        base["data_dir"] = str(data_dir)
    rt = http_on_port_zero(load(LoadOptions(dev=data_dir is None, flags=base)).runtime)
    return Agent(rt, reactor)


@pytest_twisted.ensureDeferred
async def test_agent_self_shape(reactor: Any) -> None:
    agent = _agent(reactor, server=True, connect={"enabled": True}, node_meta={"rack": "r1"})
    agent.startService()
    try:
        (url,) = agent.http_urls()
        assert url.startswith("http://127.0.0.1:")
        resp = await treq.get(url + "/v1/agent/self")
        assert resp.code == 200
        assert resp.headers.getRawHeaders("content-type") == ["application/json"]
        body = json.loads(await resp.text())
        assert set(body) == {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"}
        cfg = body["Config"]
        assert cfg["Datacenter"] == "primary"
        assert cfg["PrimaryDatacenter"] == "primary"
        assert cfg["NodeName"] == "pri"
        assert cfg["Server"] is True
        assert str(uuid.UUID(cfg["NodeID"])) == cfg["NodeID"]
        assert set(cfg) == {
            "Datacenter",
            "PrimaryDatacenter",
            "NodeName",
            "NodeID",
            "Revision",
            "Server",
            "Version",
        }
        m = body["Member"]
        assert m["Name"] == "pri" and m["Addr"] == "127.0.0.1"
        assert m["Port"] == agent.config.serf_port_lan
        assert m["Status"] == 1
        assert (m["ProtocolMin"], m["ProtocolMax"], m["ProtocolCur"]) == (1, 5, 2)
        assert (m["DelegateMin"], m["DelegateMax"], m["DelegateCur"]) == (2, 5, 4)
        assert m["Tags"]["role"] == "consul" and m["Tags"]["dc"] == "primary"
        assert m["Tags"]["id"] == cfg["NodeID"]
        assert m["Tags"]["port"] == str(agent.config.server_port)
        assert m["Tags"]["ft_fs"] == "1"
        assert body["Meta"] == {"rack": "r1"}
        assert body["Coord"] is None
        dbg = body["DebugConfig"]
        assert dbg["NodeName"] == "pri" and dbg["ServerMode"] is True
        assert dbg["PrimaryGatewaysInterval"] == "30s"
        assert dbg["EncryptKey"] == "hidden"

        pretty = await treq.get(url + "/v1/agent/self?pretty")
        assert (await pretty.text()).startswith('{\n    "Config"')

        nf = await treq.get(url + "/v1/no/such/path")
        assert nf.code == 404
        assert await nf.text() == "404 page not found"
        bad = await treq.put(url + "/v1/agent/self", data=b"")
        assert bad.code == 405
        assert await bad.text() == "method PUT not allowed"
    finally:
        await agent.stop()
    # the listening socket is closed once stop() fires
    with pytest.raises(Exception):  # noqa: B017 - any connection error proves it is closed
        await treq.get(url + "/v1/agent/self")


@pytest_twisted.ensureDeferred
async def test_stop_closes_open_keepalive_connections(reactor: Any) -> None:
    agent = _agent(reactor)
    agent.startService()
    (url,) = agent.http_urls()
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    resp = await treq.get(url + "/v1/agent/self", pool=pool)
    await resp.text()
    assert agent.http is not None and len(agent.http.connections.open) == 1
    await agent.stop()
    assert agent.http.connections.open == set()
    await pool.closeCachedConnections()


def test_node_id_persisted_in_data_dir(reactor: Any, tmp_path: Path) -> None:
    a1 = _agent(reactor, data_dir=tmp_path / "d")
    path = tmp_path / "d" / NODE_ID_FILE
    assert path.read_text() == a1.config.node_id
    assert os.stat(path).st_mode & 0o777 == 0o600
    a2 = _agent(reactor, data_dir=tmp_path / "d")
    assert a2.config.node_id == a1.config.node_id
    # -dev without a data dir: random each time
    assert _agent(reactor).config.node_id != _agent(reactor).config.node_id
    # node_id from config wins, lower-cased
    a3 = _agent(reactor, data_dir=tmp_path / "e", node_id="0F6C5B0A-1111-4222-8333-444455556666")
    assert a3.config.node_id == "0f6c5b0a-1111-4222-8333-444455556666"
