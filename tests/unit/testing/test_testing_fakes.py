"""The shipped fakes in ``wanfedtx.testing`` behave as their docstrings say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from wanfedtx.fsm.machine import FSM
from wanfedtx.gossip.interfaces import Address
from wanfedtx.rpc.errors import NoDCPath, NoLeader
from wanfedtx.testing import (
    PKI,
    FakeForwarder,
    FollowerConsensus,
    LeaderConsensus,
    NotReadyLeaderConsensus,
    ScriptedForwarder,
    SimNetwork,
    handshake_in_memory,
)
from wanfedtx.tls import testing as tls_testing
from wanfedtx.tls.certs import load_certificate
from wanfedtx.tls.configurator import TLSConfigurator


def outcome(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_the_old_tls_testing_name_is_the_same_pki() -> None:
    assert tls_testing.PKI is PKI


def test_pki_writes_a_server_pair_and_its_ca_that_tls_accepts(tmp_path: Path) -> None:
    pki = PKI()
    pair = pki.server("dc1", "s1")
    cert, key = PKI.write(pair, tmp_path, "server")
    ca = pki.write_ca(tmp_path)
    assert cert.read_bytes() == pair.cert_pem and key.read_bytes() == pair.key_pem
    assert ca.read_bytes() == pki.ca_pem
    names = load_certificate(pair.cert_pem).subject.rfc4514_string()
    assert names == "CN=server.dc1.consul"
    configurator = TLSConfigurator(pki.settings("dc1", "s1", tmp_path / "agent"))
    server, client = handshake_in_memory(
        configurator.incoming_rpc_creator(), configurator.outgoing_rpc_creator("dc1"))
    assert server.handshake_done and client.data == b"ping"


def test_follower_never_leads_and_the_not_ready_leader_leads_after_its_noop() -> None:
    assert LeaderConsensus(FSM(), "a").is_leader()
    assert not FollowerConsensus(FSM(), "a").is_leader()
    heard: list[bool] = []
    c = NotReadyLeaderConsensus(FSM(), "a")
    c.add_leadership_observer(heard.append)
    assert heard == []
    c.noop_applied()
    assert heard == [True]


class _Server:
    def rpc(self, method: str, args: Any = None) -> Deferred[Any]:
        return succeed({"method": method, "args": args})


def test_fake_forwarder_serves_known_dcs_and_fails_unknown_or_down_ones() -> None:
    down: set[str] = set()
    fwd = FakeForwarder({"dc2": _Server()}, down=down, wire=lambda v: v)
    assert fwd.datacenters() == ["dc2"]
    assert outcome(fwd.forward_dc("dc2", "Status.Ping", {"a": 1})) == [
        {"method": "Status.Ping", "args": {"a": 1}}]
    assert fwd.calls == [("dc2", "Status.Ping")]
    down.add("dc2")
    [failure] = outcome(fwd.forward_dc("dc2", "Status.Ping"))
    assert failure.check(NoDCPath)
    [failure] = outcome(fwd.forward_dc("dc9", "Status.Ping"))
    assert failure.check(NoDCPath)


def test_scripted_forwarder_fails_as_scripted_then_answers() -> None:
    fwd = ScriptedForwarder([NoLeader()])
    [failure] = outcome(fwd.forward_to_leader("KVS.Apply"))
    assert failure.check(NoLeader)
    assert outcome(fwd.forward_to_leader("KVS.Apply")) == [True] and fwd.calls == 2
    with pytest.raises(NotImplementedError):
        fwd.forward_dc("dc2", "Status.Ping")


def test_sim_network_delivers_a_packet_after_both_ends_latency() -> None:
    clock = Clock()
    net = SimNetwork(clock, latency=0.5)
    a, b = net.transport("10.0.0.1", 7946), net.transport("10.0.0.2", 7946)
    got: list[bytes] = []
    b.set_handlers(lambda packet, addr, ts: got.append(packet), lambda: None)  # type: ignore
    a.write_to_address(b"hello", Address("10.0.0.2:7946", "b"))
    clock.advance(0.9)
    assert got == []
    clock.advance(0.1)  # 0.5 leaving a + 0.5 reaching b
    assert got == [b"hello"]
