"""``performance.raft_multiplier`` and ``limits.kv_max_value_size`` from a config file reach the
running agent: its raft timers and the KV endpoint's body cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import http_get, http_on_port_zero, until
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import ConfigError, LoadOptions, load


def _config_file(tmp: Path, extra: list[str]) -> str:
    hcl = tmp / "agent.hcl"
    lines = [
        'datacenter = "dc1"',
        'node_name = "s1"',
        "server = true",
        "bootstrap = true",
        'bind_addr = "127.0.0.1"',
        'client_addr = "127.0.0.1"',
        f'data_dir = "{tmp / "data"}"',
        f"ports {{ server = {free_port()} dns = -1 serf_lan = {free_port()} "
        f"serf_wan = {free_port()} }}",
        *extra,
    ]
    hcl.write_text("\n".join(lines) + "\n")
    return str(hcl)


async def _started(reactor: Any, path: str) -> tuple[Agent, str]:
    agent = Agent(http_on_port_zero(load(LoadOptions(config_files=[path])).runtime), reactor)
    agent.startService()
    (base,) = agent.http_urls()

    async def leader_known() -> bool:
        code, body = await http_get(base + "/v1/status/leader")
        return code == 200 and body not in (b'""', b"")

    try:
        await until(reactor, "a raft leader", leader_known)
    except BaseException:
        await agent.stop()
        raise
    return agent, base


@pytest.mark.parametrize(("extra", "election"), [
    (["performance { raft_multiplier = 3 }"], 3.0),
    ([], 5.0),  # Consul's default multiplier; a lone server still elects itself at once
])
@pytest_twisted.ensureDeferred
async def test_raft_multiplier_scales_the_running_raft(
    reactor: Any, tmp_path: Path, extra: list[str], election: float
) -> None:
    agent, _ = await _started(reactor, _config_file(tmp_path, extra))
    try:
        raft = agent.raft
        if raft is None or raft.core is None:
            pytest.fail("the server agent runs no raft")
        assert raft.options.election_timeout == pytest.approx(election)
        assert raft.options.heartbeat_interval == pytest.approx(election / 10)
        assert raft.core.opts.election_timeout == pytest.approx(election)
    finally:
        await agent.stop()


@pytest.mark.parametrize("value", [0, 11, -1])
def test_raft_multiplier_out_of_range_is_refused(tmp_path: Path, value: int) -> None:
    path = _config_file(tmp_path, [f"performance {{ raft_multiplier = {value} }}"])
    with pytest.raises(ConfigError) as exc:
        load(LoadOptions(config_files=[path]))
    assert (f"performance.raft_multiplier cannot be {value}. Must be between 1 and 10"
            in str(exc.value))


@pytest_twisted.ensureDeferred
async def test_kv_max_value_size_caps_put_bodies(reactor: Any, tmp_path: Path) -> None:
    path = _config_file(tmp_path, ["limits { kv_max_value_size = 1000 }",
                                   "performance { raft_multiplier = 1 }"])
    agent, base = await _started(reactor, path)
    try:
        resp = await treq.put(base + "/v1/kv/fits", data=b"x" * 1000)
        assert resp.code == 200 and await resp.content() == b"true"
        resp = await treq.put(base + "/v1/kv/over", data=b"x" * 1001)
        assert resp.code == 413
        assert (await resp.content()).decode() == (
            "Request body(1001 bytes) too large, max size: 1000 bytes. "
            "See limits.kv_max_value_size.")
        code, _ = await http_get(base + "/v1/kv/over")
        assert code == 404
    finally:
        await agent.stop()
