"""Join-address discovery: the mDNS codec and browse, provider entries, names to A/AAAA."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed

from wanfedtx.agent.discover import Discover
from wanfedtx.agent.mdns import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Browse,
    DNSFormatError,
    decode,
    encode_query,
)
from wanfedtx.agent.primary_join import PrimaryJoin
from wanfedtx.config.discover import MDNSQuery


def name(n: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in n.strip(".").split(".")) + b"\0"


def rr(owner: bytes, rtype: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 0x8001, 120, len(rdata)) + rdata


def response(*records: bytes, questions: bytes = b"", qd: int = 0) -> bytes:
    return struct.pack("!6H", 0, 0x8400, qd, len(records), 0, 0) + questions + b"".join(records)


SERVICE = "_consul._tcp.local."


def announce(instance: str, host: str, port: int, v4: str = "", v6: str = "",
             txt: bool = True) -> list[bytes]:
    import ipaddress

    out = [
        rr(name(SERVICE), TYPE_PTR, name(instance)),
        rr(name(instance), TYPE_SRV, struct.pack("!3H", 0, 0, port) + name(host)),
    ]
    if txt:
        out.append(rr(name(instance), TYPE_TXT, b"\x05hello"))
    if v4:
        out.append(rr(name(host), TYPE_A, ipaddress.IPv4Address(v4).packed))
    if v6:
        out.append(rr(name(host), TYPE_AAAA, ipaddress.IPv6Address(v6).packed))
    return out


def test_query_is_one_ptr_question_with_the_unicast_bit() -> None:
    q = encode_query(SERVICE, qid=7)
    assert q[:12] == struct.pack("!6H", 7, 0, 1, 0, 0, 0)
    assert q[12:] == name(SERVICE) + struct.pack("!2H", TYPE_PTR, 0x8001)
    with pytest.raises(DNSFormatError):
        encode_query("a" * 64 + ".local")


def test_browse_assembles_instances_like_hashicorp_mdns() -> None:
    b = Browse(SERVICE)
    b.feed(decode(response(*announce("s1._consul._tcp.local.", "s1.local.", 8301, v4="10.0.0.1",
                                     v6="fd00::1"))))
    b.feed(decode(response(*announce("s2._consul._tcp.local.", "s2.local.", 8302, v4="10.0.0.2"))))
    # no TXT record: not complete, as hashicorp/mdns
    b.feed(decode(response(*announce("s3._consul._tcp.local.", "s3.local.", 8303, v4="10.0.0.3",
                                     txt=False))))
    # another service's PTR is ignored
    b.feed(decode(response(rr(name("_other._tcp.local."), TYPE_PTR, name("x.local.")))))
    assert b.addrs() == ["[fd00::1]:8301", "10.0.0.2:8302"]
    no6 = Browse(SERVICE, v6=False)
    no6.instances, no6._v4, no6._v6, no6._txt = b.instances, b._v4, b._v6, b._txt
    assert no6.addrs() == ["10.0.0.1:8301", "10.0.0.2:8302"]
    only6 = Browse(SERVICE, v4=False)
    only6.instances = b.instances
    assert only6.addrs() == ["[fd00::1]:8301"]


def test_decode_follows_compression_pointers() -> None:
    # the SRV target and the A owner point back into the PTR's name
    head = struct.pack("!6H", 0, 0x8400, 0, 3, 0, 0)
    ptr_owner = name(SERVICE)
    ptr_at = 12
    inst_at = 12 + len(ptr_owner) + 10
    ptr = rr(ptr_owner, TYPE_PTR, b"\x02s1" + struct.pack("!H", 0xC000 | ptr_at))
    srv = rr(struct.pack("!H", 0xC000 | inst_at), TYPE_SRV,
             struct.pack("!3H", 0, 0, 8301) + b"\x02h1\x05local\x00")
    a = rr(b"\x02h1\x05local\x00", TYPE_A, bytes([127, 0, 0, 1]))
    txt = rr(struct.pack("!H", 0xC000 | inst_at), TYPE_TXT, b"\x00")
    msg = head[:6] + struct.pack("!H", 4) + head[8:] + ptr + srv + a + txt
    recs = decode(msg)
    assert [(r.name, r.type) for r in recs][:2] == [
        (SERVICE, TYPE_PTR), ("s1." + SERVICE, TYPE_SRV)]
    b = Browse(SERVICE)
    b.feed(recs)
    assert b.addrs() == ["127.0.0.1:8301"]


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (b"\x00" * 5, "shorter than a DNS header"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x05ab", "past the end"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c", "pointer loop"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x00\x00\x01", "truncated resource"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x00" + struct.pack("!HHIH", 1, 1, 0, 9)
         + b"\x01", "runs past the end"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x80", "unsupported label type"),
        (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x00" + struct.pack("!HHIH", 33, 1, 0, 2)
         + b"\x00\x00", "SRV record too short"),
    ],
)
def test_bad_replies_are_format_errors(msg: bytes, why: str) -> None:
    with pytest.raises(DNSFormatError, match=why):
        decode(msg)


def test_queries_seen_on_the_group_are_not_answers() -> None:
    assert decode(encode_query(SERVICE)) == []


def test_discover_addresses_mdns_skipped_providers_and_names() -> None:
    asked: list[Any] = []

    def mdns(q: MDNSQuery) -> Deferred[list[str]]:
        asked.append(q)
        return succeed(["10.1.0.1:8301"])

    def resolve(host: str) -> Deferred[list[str]]:
        table = {"gw.example": ["192.0.2.10", "2001:db8::10", "192.0.2.11"]}
        if host in table:
            return succeed(table[host])
        return fail(OSError(f"no such host {host}"))

    disco = Discover(mdns, resolve)
    entries = [
        "provider=aws tag_key=consul",
        "provider=mdns service=consul timeout=1s",
        "gw.example:443",
        "192.0.2.99:443",
        "missing.example:443",
        "provider=mdns broken",  # logged, skipped
    ]
    got: list[str] = []
    Deferred.fromCoroutine(disco.addrs(entries, "mesh-gateway", "primary",
                                       resolve_names=True)).addCallback(got.extend)
    assert got == ["10.1.0.1:8301", "192.0.2.10:443", "[2001:db8::10]:443", "192.0.2.11:443",
                   "192.0.2.99:443"]
    assert asked == [MDNSQuery("consul", timeout=1.0)]
    got.clear()
    # LAN/WAN retry join: names are left to the join (memberlist resolves them)
    Deferred.fromCoroutine(disco.addrs(["gw.example:443"], "serf", "LAN")).addCallback(got.extend)
    assert got == ["gw.example:443"]


def test_primary_join_refreshes_through_discovery_every_interval() -> None:
    clock = task.Clock()
    results: list[list[str]] = [[], ["[2001:db8::1]:443", "192.0.2.1:443"]]
    fallbacks: list[list[str]] = []
    joins: list[list[str]] = []
    pj = PrimaryJoin(
        clock,
        primary_datacenter="primary",
        primary_gateways=["provider=mdns service=gw", "gw.example:443"],
        gateways_interval=5.0,
        retry_interval=30.0,
        retry_max=0,
        refresh_fallback=fallbacks.append,
        primary_gateways_ready=Deferred(),
        join_wan=lambda addrs: (joins.append(addrs), succeed(1))[1],
        on_exhausted=lambda: None,
        discover=lambda entries: succeed(results.pop(0)),
    )
    pj.startService()
    assert fallbacks == [] and joins == []  # nothing found: retry after the interval
    clock.advance(5)
    assert fallbacks == [["[2001:db8::1]:443", "192.0.2.1:443"]]
    assert joins == [["*.primary/192.0.2.2"]]
    pj.stopService()


def test_retry_join_discovers_per_attempt_and_makes_retry_max_plus_one_attempts(
    tmp_path: Any,
) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from wanfedtx.agent.gossip import AgentGossip
    from wanfedtx.config import LoadOptions, load
    from wanfedtx.gossip.errors import GossipError

    rt = load(LoadOptions(dev=True, flags={"data_dir": str(tmp_path)})).runtime
    reactor = MemoryReactorClock()
    found: list[list[str]] = [[], ["10.0.0.5:8301"], ["10.0.0.5:8301"], ["10.0.0.6:8301"]]
    exhausted: list[bool] = []
    g = AgentGossip(rt, reactor, on_join_exhausted=lambda: exhausted.append(True),
                    discover=Discover(lambda q: succeed(found.pop(0))))
    joins: list[list[str]] = []

    async def join(addrs: Any, wan: bool = False) -> int:
        joins.append(list(addrs))
        raise GossipError("refused")

    g.join = join  # type: ignore[method-assign]
    g.running = True
    g._retry_join("LAN", ["provider=mdns service=consul"], 1.0, 2, False)
    reactor.advance(0)  # attempt 1: mDNS finds nothing -> "No servers to join"
    assert joins == [] and not exhausted
    reactor.advance(1)  # attempt 2
    reactor.advance(1)  # attempt 3 = retry_max + 1: Consul's ``attempt > maxAttempts``
    assert joins == [["10.0.0.5:8301"], ["10.0.0.5:8301"]]
    assert exhausted == [True]
    reactor.advance(10)
    assert len(found) == 1  # no fourth attempt
