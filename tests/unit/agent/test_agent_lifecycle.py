"""The agent's signal loop (Consul's command loop) with a fake agent and a ``task.Clock``; the
reload of config-file services and checks with their statuses kept."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

from wanfedtx.agent.lifecycle import SignalLoop, graceful, reload_local
from wanfedtx.config import LoadOptions, load
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.local.state import LocalState


def _config(tmp: Any, text: str, name: str = "a.hcl") -> RuntimeConfig:
    path = tmp / name
    path.write_text('data_dir = "' + str(tmp / "d") + '"\nbind_addr = "127.0.0.1"\n' + text)
    return load(LoadOptions(config_files=[str(path)])).runtime


@pytest.mark.parametrize(
    ("server", "extra", "interrupt", "terminate"),
    [
        (False, "", True, True),  # clients leave on both
        (True, "", False, False),  # servers on neither
        (True, "leave_on_terminate = true\nskip_leave_on_interrupt = false\n", True, True),
        (False, "leave_on_terminate = false\nskip_leave_on_interrupt = true\n", False, False),
    ],
)
def test_consul_defaults_and_overrides(
    tmp_path: Any, server: bool, extra: str, interrupt: bool, terminate: bool
) -> None:
    text = ("server = true\n" if server else "retry_join = [\"127.0.0.1:1\"]\n") + extra
    rt = _config(tmp_path, text)
    assert graceful(rt, "interrupt") is interrupt
    assert graceful(rt, "terminated") is terminate


class FakeGossip:
    def __init__(self) -> None:
        self.leave_on_stop = True
        self.leaving: Deferred[None] | None = None

    async def leave(self) -> None:
        self.leaving = Deferred()
        await self.leaving


@attrs.define
class FakeAgent:
    config: Any
    gossip: FakeGossip = attrs.field(factory=FakeGossip)
    reloaded: list[Any] = attrs.field(factory=list)
    reload_config: Any = None


@attrs.frozen
class Flags:
    leave_on_term: bool
    skip_leave_on_int: bool


def _loop(leave_on_term: bool, skip: bool) -> tuple[SignalLoop, FakeAgent, task.Clock, list[int]]:
    agent = FakeAgent(Flags(leave_on_term, skip))
    clock = task.Clock()
    codes: list[int] = []
    return SignalLoop(agent, clock, lambda: agent.config, codes.append), agent, clock, codes


def test_not_graceful_exits_1_without_leaving() -> None:
    loop, agent, _, codes = _loop(False, True)
    loop.on_signal("terminated")
    assert codes == [1]
    assert agent.gossip.leave_on_stop is False and agent.gossip.leaving is None


def test_graceful_leaves_then_exits_0() -> None:
    loop, agent, _, codes = _loop(True, False)
    loop.on_signal("interrupt")
    assert codes == [] and agent.gossip.leaving is not None
    agent.gossip.leaving.callback(None)
    assert codes == [0]


def test_second_signal_exits_1_at_once() -> None:
    loop, agent, _, codes = _loop(True, False)
    loop.on_signal("terminated")
    loop.on_signal("terminated")
    assert codes == [1]
    assert agent.gossip.leaving is not None
    agent.gossip.leaving.callback(None)  # the leave finishing later changes nothing
    assert codes == [1]


def test_graceful_leave_times_out_after_15s() -> None:
    loop, _, clock, codes = _loop(True, False)
    loop.on_signal("terminated")
    clock.advance(14.9)
    assert codes == []
    clock.advance(0.2)
    assert codes == [1]


def test_hangup_reloads_and_never_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    loop, agent, _, codes = _loop(True, False)
    seen: list[Any] = []
    monkeypatch.setattr(
        "wanfedtx.agent.lifecycle.reload_agent", lambda a, new: seen.append(new) or []
    )
    loop.on_signal("hangup")
    loop.on_signal("hangup")
    assert codes == [] and seen == [agent.config, agent.config]


def test_hangup_with_a_bad_config_keeps_running() -> None:
    agent = FakeAgent(Flags(True, False))

    def bad() -> Any:
        raise ValueError("Error parsing a.hcl: line 1: invalid config key nope")

    codes: list[int] = []
    loop = SignalLoop(agent, task.Clock(), bad, codes.append)
    assert loop.reload() == ["Error parsing a.hcl: line 1: invalid config key nope"]
    assert codes == []


def _svc(name: str, ttl: str = "30s") -> str:
    return f'services {{ name = "{name}" port = 80 check {{ ttl = "{ttl}" }} }}\n'


def test_reload_local_replaces_config_services_and_keeps_statuses(tmp_path: Any) -> None:
    old = _config(tmp_path, _svc("web") + _svc("db"), "old.hcl")
    new = _config(tmp_path, _svc("web") + _svc("cache"), "new.hcl")
    local = LocalState("n1")
    empty = attrs.evolve(old, services=(), checks=())
    reload_local(local, empty, old)
    assert set(local.live_services()) == {"web", "db"}
    local.update_check("service:web", "passing", "fine")
    # a service registered through the HTTP API is not the config's to remove
    from wanfedtx.local.definitions import decode_service

    local.add_service(decode_service({"Name": "api-only", "Port": 1}))
    reload_local(local, old, new)
    assert set(local.live_services()) == {"web", "cache", "api-only"}
    assert local.live_checks()["service:web"]["Status"] == "passing"
    assert local.live_checks()["service:web"]["Output"] == "fine"
    assert local.live_checks()["service:cache"]["Status"] == "critical"
    assert "service:db" not in local.live_checks()
