"""``/v1/snapshot`` on a client agent: the save and the restore go over a
``consul/rpc-snapshot`` stream to the client's server (real sockets, LAN gossip)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import fast_serf, http_on_port_zero
from agent_support import until_value as until
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.snapshot.archive import read_archive

pytestmark = pytest.mark.integration

FAST = {"gossip_interval": "50ms", "probe_interval": "200ms", "probe_timeout": "100ms",
        "suspicion_mult": 3, "retransmit_mult": 3, "gossip_nodes": 3}


def _agent(reactor: Any, node: str, *, server: bool, **extra: Any) -> Agent:
    flags: dict[str, Any] = {
        "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1", "node_name": node,
        "datacenter": "dc1", "server": server,
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "gossip_lan": FAST, "gossip_wan": FAST, **extra,
    }
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor, leave_timeout=5.0, serf_tuning=fast_serf)
    agent.startService()
    return agent


@pytest_twisted.ensureDeferred
async def test_client_agent_saves_and_restores_through_its_server(reactor: Any) -> None:
    s1 = _agent(reactor, "s1", server=True)
    c1 = _agent(reactor, "c1", server=False,
                retry_join=[f"127.0.0.1:{s1.config.serf_port_lan}"], retry_interval="200ms")
    c, s = c1.http_urls()[0], s1.http_urls()[0]
    try:
        async def leader_known() -> bool:
            resp = await treq.get(f"{c}/v1/status/leader")
            return resp.code == 200 and len(await resp.content()) > 2

        await until(leader_known, "the client to reach its server")
        assert (await treq.put(f"{s}/v1/kv/saved", data=b"1")).code == 200
        resp = await treq.get(f"{c}/v1/snapshot")
        archive = await resp.content()
        assert resp.code == 200, archive
        meta, _ = read_archive(archive)
        assert resp.headers.getRawHeaders("X-Consul-Index") == [str(meta.index)]
        assert (await treq.put(f"{s}/v1/kv/later", data=b"2")).code == 200
        resp = await treq.put(f"{c}/v1/snapshot", data=archive)
        assert resp.code == 200, await resp.text()
        later = await treq.get(f"{s}/v1/kv/later")
        assert later.code == 404
        saved = await treq.get(f"{s}/v1/kv/saved?raw")
        assert await saved.content() == b"1"
        resp = await treq.put(f"{c}/v1/snapshot", data=archive[:-10])
        assert resp.code == 500
        assert (await resp.text()).startswith("failed to decompress snapshot")
    finally:
        await c1.stop()
        await s1.stop()
