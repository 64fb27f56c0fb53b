"""``wanfed operator raft list-peers`` and ``remove-peer`` against three real server agents
(raft over the RPC port, LAN gossip naming the servers): asked on a follower, the configuration
comes from the leader; a removal asked on a follower is forwarded to the leader, which changes
the raft membership, and every server then lists two peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_support import elect_and_replicate, fast_serf, http_on_port_zero, until
from netutil import free_port
from twisted.internet import threads

from wanfedtx.agent.agent import Agent
from wanfedtx.cli.main import main
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration


def _config(tmp: Path, name: str, ip: str, ports: dict[str, int]) -> Any:
    hcl = tmp / f"{name}.hcl"
    hcl.write_text("\n".join([
        'datacenter = "dc1"', f'node_name = "{name}"', "server = true", f'bind_addr = "{ip}"',
        f'client_addr = "{ip}"', f'data_dir = "{tmp / name}"', "bootstrap_expect = 3",
        "performance { raft_multiplier = 1 }",
        'retry_join = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]',
        f"ports {{ server = {ports['server']} dns = -1 "
        f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
    ]) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await threads.deferToThread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest_twisted.ensureDeferred
async def test_list_peers_and_remove_peer_through_a_follower(
    reactor: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    agents = [Agent(_config(tmp_path, f"s{i + 1}", ip, ports), reactor, serf_tuning=fast_serf)
              for i, ip in enumerate(ips)]
    for a in agents:
        a.startService()
    try:
        bases = [a.http_urls()[0] for a in agents]
        await elect_and_replicate(reactor, agents, bases)
        leader = next(i for i, a in enumerate(agents) if a.raft and a.raft.is_leader())
        followers = [i for i in range(3) if i != leader]
        asked, removed = followers
        addr = f"-http-addr={bases[asked]}"

        async def three_named() -> bool:
            code, out, _ = await _cli(capsys, "operator", "raft", "list-peers", addr)
            return code == 0 and "(unknown)" not in out and len(out.splitlines()) == 4

        await until(reactor, "three peers named by gossip", three_named)
        code, out, err = await _cli(capsys, "operator", "raft", "list-peers", addr)
        assert (code, err) == (0, "")
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        assert sorted(rows) == ["s1", "s2", "s3"]
        for i, a in enumerate(agents):
            _node, node_id, address, state, voter, protocol = rows[f"s{i + 1}"]
            assert node_id == a.config.node_id
            assert address == f"{ips[i]}:{ports['server']}"
            assert (state, voter, protocol) == (
                "leader" if i == leader else "follower", "true", "3")

        target = f"{ips[removed]}:{ports['server']}"
        code, out, err = await _cli(capsys, "operator", "raft", "remove-peer", addr,
                                    f"-address={target}")
        assert (code, out, err) == (0, f'Removed peer with address "{target}"\n', "")

        def two_peers() -> bool:
            return all(sorted(a.raft.peers()) == sorted(
                f"{ips[i]}:{ports['server']}" for i in (leader, asked))
                for a in (agents[leader], agents[asked]) if a.raft is not None)

        await until(reactor, "the removal on the leader and the follower asked", two_peers)
        code, out, _ = await _cli(capsys, "operator", "raft", "list-peers", addr, "-stale")
        assert code == 0 and len(out.splitlines()) == 3 and target not in out
        code, _, err = await _cli(capsys, "operator", "raft", "remove-peer", addr,
                                  f"-address={target}")
        assert code == 1 and f'address "{target}" was not found in the Raft configuration' in err
    finally:
        for a in agents:
            if a.running:
                await a.stop()
