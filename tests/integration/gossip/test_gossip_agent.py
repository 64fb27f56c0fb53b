"""Real agents on 127.0.0.1 with their serf pools: LAN join, flood-join into WAN, WAN join across
DCs, /v1/agent/members (?wan=1), /v1/catalog/datacenters, the wanfed refusal, graceful leave seen
as left, a SIGKILLed agent seen as failed, force-leave, and `wanfed members [-wan]`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import fast_serf, http_on_port_zero, until_value
from netutil import free_port, refusing_address
from twisted.internet import task, threads

from wanfedtx.agent.agent import Agent
from wanfedtx.cli.main import main
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent

# Short gossip timings through the real config keys (gossip_lan / gossip_wan).
FAST_GOSSIP = {
    "gossip_interval": "50ms",
    "probe_interval": "200ms",
    "probe_timeout": "100ms",
    "suspicion_mult": 3,
    "retransmit_mult": 3,
    "gossip_nodes": 3,
}


def agent_config(node: str, dc: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "node_name": node,
        "datacenter": dc,
        "server": True,
        "ports": {  # HTTP listens on port 0 (make_agent); these must be known (see netutil)
            "serf_lan": free_port(),
            "serf_wan": free_port(),
            "server": free_port(),
        },
        "gossip_lan": FAST_GOSSIP,
        "gossip_wan": FAST_GOSSIP,
    }
    cfg.update(extra)
    return cfg


def make_agent(reactor: Any, node: str, dc: str,
               request_shutdown: Callable[[], object] | None = None, **extra: Any) -> Agent:
    flags = agent_config(node, dc, **extra)
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor, leave_timeout=5.0, serf_tuning=fast_serf,
                  request_shutdown=request_shutdown)
    agent.gossip.flood_interval = 0.5
    agent.startService()
    return agent


async def until(cond: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    return await until_value(cond, what, timeout)


def base(agent: Agent) -> str:
    return agent.http_urls()[0]


async def get_json(url: str) -> Any:
    resp = await treq.get(url)
    assert resp.code == 200, (url, resp.code)
    return json.loads(await resp.content())


def statuses(members: list[dict[str, Any]]) -> dict[str, int]:
    return {m["Name"]: m["Status"] for m in members}


def members_status(agent: Agent, wan: bool = False) -> Callable[[], Any]:
    async def probe() -> dict[str, int]:
        q = "?wan=1" if wan else ""
        return statuses(await get_json(f"{base(agent)}/v1/agent/members{q}"))

    return probe


@pytest_twisted.ensureDeferred
async def test_lan_join_flood_members_cli_and_leave(
    reactor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_agent(reactor, "alpha", "dc1")
    b = make_agent(reactor, "beta", "dc1")
    stopped_b = False
    try:
        a_lan = a.config.serf_port_lan
        resp = await treq.put(f"{base(b)}/v1/agent/join/127.0.0.1:{a_lan}")
        assert resp.code == 200, await resp.text()

        async def both_alive() -> bool:
            for ag in (a, b):
                if await members_status(ag)() != {"alpha": 1, "beta": 1}:
                    return False
            return True

        await until(both_alive, "both LAN members alive on both agents")
        lan = await get_json(f"{base(a)}/v1/agent/members")
        alpha = next(m for m in lan if m["Name"] == "alpha")
        assert alpha["Addr"] == "127.0.0.1" and alpha["Port"] == a_lan
        assert alpha["Tags"]["role"] == "consul" and alpha["Tags"]["dc"] == "dc1"
        assert alpha["Tags"]["wan_join_port"] == str(a.config.serf_port_wan)
        assert alpha["Tags"]["port"] == str(a.config.server_port)

        # Flood-join: LAN servers end up in each other's WAN pool, named <node>.<dc>.
        async def flooded() -> bool:
            want = {"alpha.dc1": 1, "beta.dc1": 1}
            return (
                await members_status(a, wan=True)() == want
                and await members_status(b, wan=True)() == want
            )

        await until(flooded, "flood-join into the WAN pool")
        wan = await get_json(f"{base(a)}/v1/agent/members?wan=1")
        beta_wan = next(m for m in wan if m["Name"] == "beta.dc1")
        assert beta_wan["Port"] == b.config.serf_port_wan
        assert beta_wan["Tags"]["segment"] == "" and beta_wan["Tags"]["ft_fs"] == "1"
        assert beta_wan["Tags"]["id"] == b.config.node_id
        assert (beta_wan["ProtocolCur"], beta_wan["DelegateCur"]) == (2, 4)
        assert await get_json(f"{base(a)}/v1/agent/members?segment=other") == []
        bad = await treq.get(f"{base(a)}/v1/agent/members?wan=1&segment=x")
        assert bad.code == 400 and await bad.text() == "Cannot provide a segment with wan=true"

        # /v1/agent/self's Member is the running serf member.
        me = (await get_json(f"{base(a)}/v1/agent/self"))["Member"]
        assert me["Name"] == "alpha" and me["Port"] == a_lan and me["Status"] == 1

        # wanfed members [-wan] against the real agent.
        addr = base(a).removeprefix("http://")
        rc = await threads.deferToThread(main, ["members", "-http-addr", addr])
        out = capsys.readouterr().out.splitlines()
        assert rc == 0
        assert [line.split()[:3] for line in out[1:]] == [
            ["alpha", f"127.0.0.1:{a_lan}", "alive"],
            ["beta", f"127.0.0.1:{b.config.serf_port_lan}", "alive"],
        ]
        rc = await threads.deferToThread(main, ["members", "-wan", "-http-addr", addr])
        out = capsys.readouterr().out.splitlines()
        assert rc == 0
        assert [line.split()[:3] for line in out[1:]] == [
            ["alpha.dc1", f"127.0.0.1:{a.config.serf_port_wan}", "alive"],
            ["beta.dc1", f"127.0.0.1:{b.config.serf_port_wan}", "alive"],
        ]

        # Graceful stop: leave intent + memberlist leave, seen as left (3), not failed.
        await b.stop()
        stopped_b = True

        async def left() -> bool:
            return (await members_status(a)()).get("beta") == 3 and (
                await members_status(a, wan=True)()
            ).get("beta.dc1") == 3

        await until(left, "beta seen as left")
        rc = await threads.deferToThread(main, ["members", "-status", "left", "-http-addr", addr])
        out = capsys.readouterr().out.splitlines()
        assert rc == 0 and out[1].split()[:3] == [
            "beta",
            f"127.0.0.1:{b.config.serf_port_lan}",
            "left",
        ]
    finally:
        await a.stop()
        if not stopped_b:
            await b.stop()


@pytest_twisted.ensureDeferred
async def test_wan_join_datacenters_and_wanfed_refusal(reactor: Any) -> None:
    one = make_agent(reactor, "one", "dc1")
    two = make_agent(reactor, "two", "dc2")
    fed = make_agent(
        reactor,
        "fed",
        "dc3",
        connect={"enabled": True, "enable_mesh_gateway_wan_federation": True},
    )
    try:
        # Before any join each server only knows its own DC.
        assert await get_json(f"{base(one)}/v1/catalog/datacenters") == ["dc1"]
        resp = await treq.put(
            f"{base(two)}/v1/agent/join/127.0.0.1:{one.config.serf_port_wan}?wan=1"
        )
        assert resp.code == 200, await resp.text()
        want = {"one.dc1": 1, "two.dc2": 1}
        for ag in (one, two):
            await until(
                lambda ag=ag: _eq(members_status(ag, wan=True), want), "WAN members alive"
            )
        # The LAN pool is untouched by a WAN join.
        assert await members_status(one)() == {"one": 1}
        # Local DC first, then the others by name (no coordinates: no round-trip-time order).
        assert await get_json(f"{base(one)}/v1/catalog/datacenters") == ["dc1", "dc2"]
        assert await get_json(f"{base(two)}/v1/catalog/datacenters") == ["dc2", "dc1"]
        assert [s.name for s in one.gossip.router.servers_for_dc("dc2")] == ["two"]
        assert [s.addr for s in one.gossip.router.servers_for_dc("dc2")] == [
            f"127.0.0.1:{two.config.server_port}"
        ]

        # ?dc= forwarding goes through the gossip router to dc2's RPC port.
        resp = await treq.put(f"{base(two)}/v1/kv/where", b"dc2-value")
        assert resp.code == 200
        got = await get_json(f"{base(one)}/v1/kv/where?dc=dc2")
        assert [e["Key"] for e in got] == ["where"]

        async def dc2_nodes() -> bool:
            resp = await treq.get(f"{base(one)}/v1/catalog/nodes?dc=dc2")
            return resp.code == 200 and [n["Node"] for n in json.loads(await resp.content())] == [
                "two"
            ]

        await until(dc2_nodes, "dc2's catalog read from dc1")
        resp = await treq.get(f"{base(one)}/v1/kv/where?dc=dc9")
        assert resp.code == 500 and "No path to datacenter" in await resp.text()

        # WAN join refused with mesh-gateway federation on.
        resp = await treq.put(
            f"{base(fed)}/v1/agent/join/127.0.0.1:{one.config.serf_port_wan}?wan=1"
        )
        assert resp.code == 500
        assert (
            await resp.text()
            == "WAN join is disabled when wan federation via mesh gateways is enabled"
        )
        # Consul's LAN merge delegate: another DC's agent cannot join our LAN pool.
        resp = await treq.put(f"{base(two)}/v1/agent/join/127.0.0.1:{one.config.serf_port_lan}")
        assert resp.code == 500
        assert "part of wrong datacenter" in await resp.text()
        assert await members_status(one)() == {"one": 1}
        assert await members_status(two)() == {"two": 1}
        # A bad LAN join is an error with the reason, not a success.
        with refusing_address() as nowhere:
            resp = await treq.put(f"{base(one)}/v1/agent/join/{nowhere}")
            assert resp.code == 500 and (await resp.text())
        assert (await treq.get(f"{base(one)}/v1/agent/join/x")).code == 405
    finally:
        for ag in (one, two, fed):
            await ag.stop()


async def _eq(probe: Callable[[], Any], want: Any) -> bool:
    return bool(await probe() == want)


@pytest_twisted.ensureDeferred
async def test_killed_agent_is_failed_then_force_left(reactor: Any, tmp_path: Path) -> None:
    one = make_agent(reactor, "one", "dc1")
    flags = agent_config("victim", "dc2")
    flags["ports"]["http"] = free_port()  # a `wanfed agent` process: its port is chosen first
    conf = tmp_path / "victim.json"
    conf.write_text(json.dumps(flags))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(BIN / "wanfed"), "agent", "-dev", "-config-file", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    victim_http = f"http://127.0.0.1:{flags['ports']['http']}"
    try:

        async def up() -> bool:
            try:
                resp = await treq.get(f"{victim_http}/v1/agent/self")
            except Exception:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False
            return bool(resp.code == 200)

        await until(up, "the victim agent's HTTP API", timeout=30)
        resp = await treq.put(
            f"{victim_http}/v1/agent/join/127.0.0.1:{one.config.serf_port_wan}?wan=1"
        )
        assert resp.code == 200, await resp.text()
        await until(
            lambda: _eq(members_status(one, wan=True), {"one.dc1": 1, "victim.dc2": 1}),
            "victim alive in the WAN pool",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        await until(
            lambda: _eq(members_status(one, wan=True), {"one.dc1": 1, "victim.dc2": 4}),
            "victim seen as failed",
        )
        # As Consul's router: a failed server stays known (tried last) until it leaves or is
        # reaped, so its datacenter is still listed.
        assert await get_json(f"{base(one)}/v1/catalog/datacenters") == ["dc1", "dc2"]
        resp = await treq.put(f"{base(one)}/v1/agent/force-leave/victim.dc2")
        assert resp.code == 200, await resp.text()
        assert (await members_status(one, wan=True)())["victim.dc2"] == 3
        assert await get_json(f"{base(one)}/v1/catalog/datacenters") == ["dc1"]  # left: gone
        resp = await treq.put(f"{base(one)}/v1/agent/force-leave/victim.dc2?prune")
        assert resp.code == 200
        assert await members_status(one, wan=True)() == {"one.dc1": 1}
        resp = await treq.put(f"{base(one)}/v1/agent/force-leave/nobody")
        assert resp.code == 500 and "No node found with name 'nobody'" in await resp.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        await one.stop()


KEY = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="


@pytest_twisted.ensureDeferred
async def test_retry_join_encryption_and_http_leave(reactor: Any) -> None:
    from twisted.internet.defer import Deferred

    f1 = agent_config("k1", "dc1", encrypt=KEY)
    lan1, wan1 = f1["ports"]["serf_lan"], f1["ports"]["serf_wan"]
    # k2 and k3 start first: their first attempts fail, the retries join once k1 is up.
    k2 = make_agent(
        reactor, "k2", "dc1", encrypt=KEY, retry_join=[f"127.0.0.1:{lan1}"],
        retry_interval="100ms",
    )
    stopped: Deferred[None] = Deferred()
    k3 = make_agent(
        reactor, "k3", "dc2", encrypt=KEY, retry_join_wan=[f"127.0.0.1:{wan1}"],
        retry_interval_wan="100ms",
        request_shutdown=lambda: k3.stop().chainDeferred(stopped),
    )
    k1 = Agent(http_on_port_zero(load(LoadOptions(dev=True, flags=f1)).runtime), reactor,
               serf_tuning=fast_serf)
    plain = make_agent(reactor, "plain", "dc1")
    k3_stopped = False
    try:
        await task.deferLater(reactor, 0.3, lambda: None)  # type: ignore[arg-type]
        k1.startService()
        await until(lambda: _eq(members_status(k1), {"k1": 1, "k2": 1}), "k2 retry-joined LAN")
        await until(
            lambda: _eq(members_status(k1, wan=True), {"k1.dc1": 1, "k2.dc1": 1, "k3.dc2": 1}),
            "k3 retry-joined WAN (and k2 flood-joined)",
        )
        # Without the key nobody answers: the join fails with the reason.
        resp = await treq.put(f"{base(plain)}/v1/agent/join/127.0.0.1:{lan1}")
        assert resp.code == 500 and await resp.text()
        assert await members_status(plain)() == {"plain": 1}

        # PUT /v1/agent/leave: graceful leave, then the agent shuts down.
        resp = await treq.put(f"{base(k3)}/v1/agent/leave")
        assert resp.code == 200
        await until(
            lambda: _eq(members_status(k1, wan=True), {"k1.dc1": 1, "k2.dc1": 1, "k3.dc2": 3}),
            "k3 left",
        )
        await stopped
        k3_stopped = True
        assert not k3.running
    finally:
        for ag in (k1, k2, plain) if k3_stopped else (k1, k2, k3, plain):
            await ag.stop()


@pytest_twisted.ensureDeferred
async def test_failed_start_join_shuts_agent_down(reactor: Any) -> None:
    from twisted.internet.defer import Deferred

    with refusing_address() as nowhere:
        flags = agent_config("lonely", "dc1", start_join=[nowhere])
        asked: Deferred[None] = Deferred()
        agent = Agent(http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime),
                      reactor, serf_tuning=fast_serf,
                      request_shutdown=lambda: asked.callback(None))
        agent.startService()
        try:
            await asked.addTimeout(10, reactor)
        finally:
            await agent.stop()
