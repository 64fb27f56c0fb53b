"""Stopping a server agent twice (``PUT /v1/agent/leave`` while its owner stops it, or a stop
after the stop) stops every child once: both callers' Deferreds fire after the one stop and
nothing is logged as an error (the raft leadership observers were unregistered twice before)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_support import fast_serf, http_on_port_zero, start_dev_agent, until
from netutil import free_port
from twisted.internet.defer import Deferred, DeferredList

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.services import MultiService

pytestmark = pytest.mark.integration


def _single_server(tmp: Path) -> Any:
    hcl = tmp / "s1.hcl"
    hcl.write_text("\n".join([
        'datacenter = "dc1"', 'node_name = "s1"', "server = true", 'bind_addr = "127.0.0.1"',
        'client_addr = "127.0.0.1"', f'data_dir = "{tmp / "s1"}"', "bootstrap_expect = 1",
        "performance { raft_multiplier = 1 }",
        f"ports {{ server = {free_port()} dns = -1 serf_lan = {free_port()} "
        f"serf_wan = {free_port()} }}",
    ]) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


@pytest_twisted.ensureDeferred
async def test_two_stops_stop_each_child_once(reactor: Any, tmp_path: Path) -> None:
    agent = Agent(_single_server(tmp_path), reactor, serf_tuning=fast_serf)
    agent.startService()
    raft = agent.raft
    assert raft is not None
    await until(reactor, "the single server leads", raft.is_leader)
    first = agent.stopService()
    second = agent.stopService()
    results = await DeferredList([first, second], fireOnOneErrback=True, consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True]
    assert not agent.running and not any(child.running for child in agent)
    await agent.stopService()  # stopped already: nothing runs a second time
    # a child's failed stop is an unhandled error in Twisted's DeferredList, logged when the
    # list is collected: collect now so that this test's log check sees it
    gc.collect()


@pytest_twisted.ensureDeferred
async def test_a_stop_that_fails_fails_for_every_caller(reactor: Any) -> None:
    agent = start_dev_agent(reactor, "failing-stop", server=True)
    handing_over: Deferred[None] = Deferred()
    agent._hand_over_leadership = lambda: handing_over  # type: ignore[method-assign]
    first, second = agent.stopService(), agent.stopService()
    handing_over.errback(RuntimeError("hand-over broke"))
    outcomes = await DeferredList([first, second], consumeErrors=True)
    assert [ok for ok, _ in outcomes] == [False, False]
    assert all("hand-over broke" in str(f.value) for _, f in outcomes)
    await MultiService.stopService(agent)  # what the failed stop skipped

