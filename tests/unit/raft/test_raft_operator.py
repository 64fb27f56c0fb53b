"""The ``Operator.Raft*`` RPC endpoints on a fake raft: the configuration's shape (LAN names,
``(unknown)``), removal by address or ID, forwarding and the errors."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

from wanfedtx.raft.errors import ConfigChangeError, RaftError
from wanfedtx.raft.operator import OperatorEndpoints, ServerIdentity, server_entries

A, B = "10.0.0.10:8300", "[::1]:8300"
LAN = {A: ServerIdentity("s1", "id-1", "3"), "::0001:8300": ServerIdentity("s2", "", "2")}


class Raft:
    def __init__(self) -> None:
        self.voters = [A, B]
        self.removed: list[str] = []

    def configuration(self) -> tuple[int, list[str]]:
        return 4, list(self.voters)

    def leader_address(self) -> str:
        return A

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]:
        self.removed.append(addr)
        return succeed((5, None))


def result(d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "did not fire"
    if hasattr(got[0], "raiseException"):
        got[0].raiseException()
    return got[0]


async def local(method: str, args: dict[str, Any], write: bool) -> tuple[bool, Any]:
    return False, None


def test_server_entries_name_servers_from_lan_gossip() -> None:
    assert server_entries([A, B, "10.9.9.9:8300"], A, LAN) == [
        {"ID": "id-1", "Node": "s1", "Address": A, "Leader": True, "ProtocolVersion": "3",
         "Voter": True},
        {"ID": B, "Node": "s2", "Address": B, "Leader": False, "ProtocolVersion": "2",
         "Voter": True},
        {"ID": "10.9.9.9:8300", "Node": "(unknown)", "Address": "10.9.9.9:8300",
         "Leader": False, "ProtocolVersion": "unknown", "Voter": True},
    ]


def test_configuration_and_removal() -> None:
    raft = Raft()
    ops = OperatorEndpoints(raft, lambda: LAN, local, A).handlers()
    reply = result(ops["Operator.RaftGetConfiguration"]({}))
    assert reply["Index"] == 4 and [s["Node"] for s in reply["Servers"]] == ["s1", "s2"]
    result(ops["Operator.RaftRemovePeerByAddress"]({"Address": "[::0:1]:8300"}))
    result(ops["Operator.RaftRemovePeerByID"]({"ID": "id-1"}))
    assert raft.removed == [B, A]
    with pytest.raises(ConfigChangeError, match='address "x:1" was not found in the Raft '):
        result(ops["Operator.RaftRemovePeerByAddress"]({"Address": "x:1"}))
    with pytest.raises(ConfigChangeError, match='id "nope" was not found in the Raft '):
        result(ops["Operator.RaftRemovePeerByID"]({"ID": "nope"}))


def test_requests_are_forwarded_when_the_forwarder_serves_them() -> None:
    seen: list[tuple[str, bool]] = []

    async def forward(method: str, args: dict[str, Any], write: bool) -> tuple[bool, Any]:
        seen.append((method, write))
        return True, {"forwarded": method}

    ops = OperatorEndpoints(Raft(), lambda: LAN, forward, A).handlers()
    assert result(ops["Operator.RaftGetConfiguration"]({})) == {
        "forwarded": "Operator.RaftGetConfiguration"}
    result(ops["Operator.RaftRemovePeerByID"]({"ID": "id-1"}))
    assert seen == [("Operator.RaftGetConfiguration", False),
                    ("Operator.RaftRemovePeerByID", True)]


def test_without_raft_the_server_is_its_only_peer() -> None:
    ops = OperatorEndpoints(None, lambda: {}, local, A).handlers()
    reply = result(ops["Operator.RaftGetConfiguration"]({}))
    assert reply == {"Index": 0, "Servers": [
        {"ID": A, "Node": "(unknown)", "Address": A, "Leader": True,
         "ProtocolVersion": "unknown", "Voter": True}]}
    with pytest.raises(RaftError, match="without raft"):
        result(ops["Operator.RaftRemovePeerByAddress"]({"Address": A}))
