"""``provider=mdns``: a real mDNS browse over UDP, answered by a fake responder on loopback."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import DatagramProtocol

from wanfedtx.agent.discover import Discover
from wanfedtx.agent.mdns import mdns_addrs
from wanfedtx.config.discover import classify

pytestmark = pytest.mark.integration


def _name(n: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in n.strip(".").split(".")) + b"\0"


def _rr(owner: str, rtype: int, rdata: bytes) -> bytes:
    return _name(owner) + struct.pack("!HHIH", rtype, 0x8001, 120, len(rdata)) + rdata


def _question(msg: bytes) -> tuple[str, int, int]:
    pos, labels = 12, []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1 : pos + 1 + n].decode())
        pos += 1 + n
    qtype, qclass = struct.unpack("!2H", msg[pos + 1 : pos + 5])
    return ".".join(labels) + ".", qtype, qclass


class FakeResponder(DatagramProtocol):
    """Answers PTR questions for ``service`` the way an mDNS responder does (unicast reply
    to the asker when the question has the unicast-response bit); garbage first, to show a
    bad reply is dropped without losing the good one."""

    def __init__(self, service: str, instances: list[tuple[str, str, int, str]]) -> None:
        self.service = service
        self.instances = instances
        self.questions: list[tuple[str, int, int]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        q = _question(datagram)
        self.questions.append(q)
        if q[0] != self.service or q[1] != 12:
            return
        records = []
        for inst, host, port, ip in self.instances:
            records.append(_rr(self.service, 12, _name(inst)))
            records.append(_rr(inst, 33, struct.pack("!3H", 0, 0, port) + _name(host)))
            records.append(_rr(inst, 16, b"\x07wanfed=1"))
            addr_ip = ipaddress.ip_address(ip)
            records.append(_rr(host, 1 if addr_ip.version == 4 else 28, addr_ip.packed))
        assert self.transport is not None
        self.transport.write(b"\xff" * 7, addr)  # not DNS at all
        head = struct.pack("!6H", 0, 0x8400, 0, len(records), 0, 0)
        self.transport.write(head + b"".join(records), addr)


@pytest_twisted.ensureDeferred
async def test_a_fake_mdns_responder_on_loopback_is_found(reactor: Any, logged: Any) -> None:
    responder = FakeResponder(
        "_consul._tcp.local.",
        [
            ("gw1._consul._tcp.local.", "gw1.local.", 4431, "127.0.0.1"),
            ("gw2._consul._tcp.local.", "gw2.local.", 4432, "::1"),
        ],
    )
    port = reactor.listenUDP(0, responder, interface="127.0.0.1")
    target = ("127.0.0.1", port.getHost().port)
    try:
        (query,) = classify(["provider=mdns service=_consul._tcp timeout=300ms"]).mdns
        addrs = await mdns_addrs(reactor, reactor, query, targets=[target])
        assert sorted(addrs) == ["127.0.0.1:4431", "[::1]:4432"]
        assert responder.questions == [("_consul._tcp.local.", 12, 0x8001)]
        (v4only,) = classify(["provider=mdns service=_consul._tcp timeout=300ms v6=false"]).mdns
        assert await mdns_addrs(reactor, reactor, v4only, targets=[target]) == ["127.0.0.1:4431"]
        # the whole path an agent's join takes: entries -> addresses
        disco = Discover(lambda q: mdns_addrs(reactor, reactor, q, targets=[target]))
        found = await disco.addrs(
            ["provider=mdns service=_consul._tcp timeout=300ms", "provider=aws tag_key=x",
             "10.9.9.9:8301"],
            "serf", "LAN",
        )
        assert sorted(found) == ["10.9.9.9:8301", "127.0.0.1:4431", "[::1]:4432"]
        # nobody answers another service: nothing found, after the timeout, no error
        (other,) = classify(["provider=mdns service=nothing timeout=200ms"]).mdns
        assert await mdns_addrs(reactor, reactor, other, targets=[target]) == []
    finally:
        await port.stopListening()
    dropped = [e for e in logged if "does not decode" in str(e.get("log_format", ""))]
    assert dropped and all(e.get("peer", "").startswith("127.0.0.1:") for e in dropped)
