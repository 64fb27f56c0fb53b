"""Test helpers for real agents: short serf timings (the agent's test-only ``serf_tuning``),
polling with a deadline, HTTP checks across several agents and the three-server election and
replication scenario."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import treq
from netutil import free_port
from twisted.internet import task

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.gossip.serf import SerfConfig


def fast_serf(cfg: SerfConfig) -> None:
    """Test-only serf timings (the agent's ``serf_tuning`` hook)."""
    cfg.leave_propagate_delay = 0.2
    cfg.broadcast_timeout = 2.0
    cfg.memberlist.push_pull_interval = 2.0
    cfg.memberlist.tcp_timeout = 2.0


async def until(reactor: Any, what: str, check: Callable[[], bool | Awaitable[bool]],
                seconds: float = 20.0) -> None:
    """Poll ``check`` (plain or async) every 50 ms; AssertionError after ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


async def until_value(cond: Callable[[], Awaitable[Any]], what: str,
                      timeout: float = 20.0) -> Any:
    """Await ``cond()`` every 50 ms until it gives a true value, and return that value;
    AssertionError naming ``what`` and the last value after ``timeout`` seconds."""
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    last: Any = None
    for _ in range(int(timeout / 0.05)):
        last = await cond()
        if last:
            return last
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

async def http_get(url: str) -> tuple[int, bytes]:
    """GET ``url``: status code and body."""
    resp = await treq.get(url)
    return resp.code, await resp.content()


async def one_leader_known(bases: Sequence[str]) -> bool:
    """Every agent's /v1/status/leader names a leader, and the same one."""
    leaders = set()
    for b in bases:
        code, body = await http_get(b + "/v1/status/leader")
        if code != 200 or body in (b'""', b""):
            return False
        leaders.add(body)
    return len(leaders) == 1


async def body_everywhere(bases: Sequence[str], path: str, expected: bytes) -> bool:
    """Every agent answers ``path`` with 200 and exactly ``expected``."""
    for b in bases:
        code, body = await http_get(b + path)
        if code != 200 or body != expected:
            return False
    return True


async def elect_and_replicate(reactor: Any, agents: Sequence[Agent], bases: Sequence[str],
                              seconds: float = 20.0) -> None:
    """Three servers agree on one leader and list three raft peers; a KV write on a follower
    is forwarded to the leader and reaches every server."""
    await until(reactor, "one leader known to all three", lambda: one_leader_known(bases),
                seconds)
    assert sum(1 for a in agents if a.raft is not None and a.raft.is_leader()) == 1
    code, body = await http_get(bases[0] + "/v1/status/peers")
    assert code == 200 and len(json.loads(body)) == 3
    follower = next(i for i, a in enumerate(agents) if a.raft and not a.raft.is_leader())
    resp = await treq.put(bases[follower] + "/v1/kv/shared", data=b"hello")
    assert resp.code == 200, await resp.text()
    await until(reactor, "the write on every server",
                lambda: body_everywhere(bases, "/v1/kv/shared?raw&stale", b"hello"))


def http_on_port_zero(rt: RuntimeConfig) -> RuntimeConfig:
    """``rt`` with its HTTP API listening on port 0 (read the port back with
    ``Agent.http_urls()``). Consul's config means "disabled" by ``ports.http = 0``, so the built
    runtime config is changed instead of the input."""
    return attrs.evolve(rt, http_port=0, http_addrs=tuple((h, 0) for h, _ in rt.http_addrs))


FAST_GOSSIP = {"gossip_interval": "50ms", "probe_interval": "200ms", "probe_timeout": "100ms",
               "suspicion_mult": 3, "retransmit_mult": 3, "gossip_nodes": 3}


def start_dev_agent(reactor: Any, node: str, dc: str = "dc1", *, server: bool,
                    **extra: Any) -> Agent:
    """A started ``-dev`` agent on 127.0.0.1 (HTTP on port 0, fast gossip and serf timings);
    ``extra`` are config keys laid over the defaults (``acl``, ``retry_join``, ...)."""
    flags: dict[str, Any] = {
        "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1", "node_name": node,
        "datacenter": dc, "server": server,
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "gossip_lan": FAST_GOSSIP, "gossip_wan": FAST_GOSSIP,
    }
    flags.update(extra)
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor, leave_timeout=5.0, serf_tuning=fast_serf)
    agent.gossip.flood_interval = 0.5
    agent.startService()
    return agent
