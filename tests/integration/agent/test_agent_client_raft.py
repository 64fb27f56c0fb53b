"""A client agent in front of three raft servers (127.0.0.1-3, as three hosts would be): it
learns all three from LAN gossip, its writes reach the leader through whichever server it
calls, and when the leader leaves, writes through the client go on (the client moves to another
server and retries while no leader is known) and every acknowledged write is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import fast_serf, http_get, http_on_port_zero, until
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration


def _config(tmp: Path, name: str, ip: str, ports: dict[str, int], extra: list[str]) -> Any:
    hcl = tmp / f"{name}.hcl"
    lines = [
        'datacenter = "dc1"',
        f'node_name = "{name}"',
        f'bind_addr = "{ip}"',
        f'client_addr = "{ip}"',
        f'data_dir = "{tmp / name}"',
        f"ports {{ server = {ports['server']} dns = -1 "
        f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
        'retry_join = ["127.0.0.1"]',
        'retry_interval = "200ms"',
        *extra,
    ]
    hcl.write_text("\n".join(lines) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


@pytest_twisted.ensureDeferred
async def test_client_writes_survive_the_leader_leaving(reactor: Any, tmp_path: Path) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    servers = [
        Agent(_config(tmp_path, f"s{i + 1}", f"127.0.0.{i + 1}", ports,
                      ["server = true", "bootstrap_expect = 3",
                       "performance { raft_multiplier = 1 }"]), reactor, serf_tuning=fast_serf)
        for i in range(3)
    ]
    client = Agent(_config(tmp_path, "c1", "127.0.0.4", ports, ["server = false"]), reactor,
                   serf_tuning=fast_serf)
    for a in [*servers, client]:
        a.startService()
    try:
        c = client.http_urls()[0]

        async def leader_via_client() -> bool:
            code, body = await http_get(c + "/v1/status/leader")
            return code == 200 and body not in (b'""', b"")

        await until(reactor, "a leader known through the client", leader_via_client, 30)
        await until(reactor, "three servers known to the client",
                    lambda: client.client is not None and client.client.known_servers() == 3)
        code, body = await http_get(c + "/v1/status/peers")
        assert code == 200 and len(json.loads(body)) == 3

        async def client_node_registered() -> bool:
            code, body = await http_get(c + "/v1/health/node/c1")
            return code == 200 and [ch["CheckID"] for ch in json.loads(body)] == ["serfHealth"]

        await until(reactor, "the client node with serfHealth", client_node_registered)

        async def every_server_is_service_consul() -> bool:
            code, body = await http_get(c + "/v1/health/service/consul?passing")
            return code == 200 and sorted(e["Node"]["Node"] for e in json.loads(body)) == [
                "s1", "s2", "s3"]

        # the leader registers every server (not only itself): gateways with -expose-servers
        # read this list
        await until(reactor, "all three servers as service consul", every_server_is_service_consul)

        acknowledged: list[str] = []

        async def write(i: int) -> bool:
            resp = await treq.put(f"{c}/v1/kv/loop/{i}", data=str(i).encode())
            body = await resp.content()
            if resp.code == 200 and body == b"true":
                acknowledged.append(str(i))
                return True
            return False

        for i in range(5):
            assert await write(i)
        leader = next(a for a in servers if a.raft is not None and a.raft.is_leader())
        await leader.stop()
        i = 5

        async def write_again() -> bool:
            nonlocal i
            i += 1
            return await write(i)

        await until(reactor, "a write through the client after the leader left", write_again, 30)
        await until(reactor, "the client forgetting the server that left",
                    lambda: client.client is not None and client.client.known_servers() == 2)
        code, body = await http_get(c + "/v1/kv/loop/?recurse&consistent")
        assert code == 200
        stored = {e["Key"].rsplit("/", 1)[1] for e in json.loads(body)}
        assert set(acknowledged) <= stored
    finally:
        for a in [client, *servers]:
            if a.running:
                await a.stop()
