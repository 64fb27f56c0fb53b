"""Server agents keep their state in raft: a restart keeps every write, and three servers that
join by address with ``bootstrap_expect = 3`` elect one leader and replicate KV writes.

The three servers use 127.0.0.1, 127.0.0.2 and 127.0.0.3 with the same ports, as three hosts
would (join addresses carry no RPC port; every server uses ``ports.server``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import elect_and_replicate, fast_serf, http_get, http_on_port_zero, until
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load


def _config(tmp: Path, name: str, ip: str, ports: dict[str, int], extra: list[str]) -> Any:
    hcl = tmp / f"{name}.hcl"
    lines = [
        'datacenter = "dc1"',
        f'node_name = "{name}"',
        "server = true",
        f'bind_addr = "{ip}"',
        f'client_addr = "{ip}"',
        f'data_dir = "{tmp / name}"',
        f"ports {{ server = {ports['server']} dns = -1 "
        f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
        *extra,
    ]
    hcl.write_text("\n".join(lines) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


@pytest_twisted.ensureDeferred
async def test_restart_keeps_kv_and_catalog(reactor: Any, tmp_path: Path) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    cfg = _config(tmp_path, "s1", "127.0.0.1", ports, ["bootstrap = true"])

    agent = Agent(cfg, reactor)
    agent.startService()
    (base,) = agent.http_urls()
    try:
        async def leader_known() -> bool:
            code, body = await http_get(base + "/v1/status/leader")
            return code == 200 and body not in (b'""', b"")

        await until(reactor, "a raft leader", leader_known)
        resp = await treq.put(base + "/v1/kv/app/config", data=b"v1")
        assert resp.code == 200 and await resp.content() == b"true"
        resp = await treq.put(base + "/v1/kv/app/other", data=b"v2")
        assert resp.code == 200
    finally:
        await agent.stop()

    again = Agent(cfg, reactor)
    again.startService()
    (base,) = again.http_urls()
    try:
        async def value_back() -> bool:
            code, body = await http_get(base + "/v1/kv/app/config?raw")
            return code == 200 and body == b"v1"

        await until(reactor, "the KV value after restart", value_back)
        code, body = await http_get(base + "/v1/kv/app?recurse")
        assert code == 200
        assert sorted(e["Key"] for e in json.loads(body)) == ["app/config", "app/other"]

        async def server_registered() -> bool:
            code, body = await http_get(base + "/v1/catalog/service/consul")
            return code == 200 and [e["Node"] for e in json.loads(body)] == ["s1"]

        await until(reactor, "service consul in the catalog", server_registered)
    finally:
        await again.stop()


@pytest.mark.parametrize("joins", ["all", "gossip"])
@pytest_twisted.ensureDeferred
async def test_three_servers_elect_one_leader_and_replicate(
    reactor: Any, tmp_path: Path, joins: str
) -> None:
    """``all``: every server lists every address in ``retry_join``. ``gossip``: s1 lists none
    and s2, s3 list only s1, so raft learns the other servers from the LAN pool's members."""
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

    def join_list(i: int) -> str:
        targets = ips if joins == "all" else ([] if i == 0 else ips[:1])
        return ", ".join(f'"{ip}"' for ip in targets)

    agents = [
        Agent(
            _config(
                tmp_path,
                f"s{i + 1}",
                ip,
                ports,
                ["bootstrap_expect = 3", f"retry_join = [{join_list(i)}]",
                 "performance { raft_multiplier = 1 }"],
            ),
            reactor,
            serf_tuning=fast_serf,
        )
        for i, ip in enumerate(ips)
    ]
    for a in agents:
        a.startService()
    try:
        bases = [a.http_urls()[0] for a in agents]
        # One leader; a write on a follower is forwarded to it and replicated to every server.
        await elect_and_replicate(reactor, agents, bases)

        # Graceful leave: the leader hands leadership over before it stops, so another server
        # leads as soon as its stop has finished (no election timeout to wait for).
        leader = next(a for a in agents if a.raft is not None and a.raft.is_leader())
        await leader.stop()
        assert any(a.raft is not None and a.raft.is_leader() for a in agents if a is not leader)
    finally:
        for a in agents:
            if a.running:
                await a.stop()
