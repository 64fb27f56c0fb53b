# -*- test-case-name: tests.unit.agent.test_agent_discover -*-
"""go-discover's ``mdns`` provider: a one-shot mDNS browse for ``<service>.<domain>``.

The sans-IO part is a minimal DNS message codec (RFC 1035 with name compression, only what an
mDNS browse needs: PTR, SRV, TXT, A and AAAA records) and :class:`Browse`, which gathers the
answers the way hashicorp/mdns's client does: the PTR names a service instance, the instance's
SRV names its host and port, the host's A / AAAA records give its addresses, and an instance is
complete once it has an address, a port and its TXT record. The result is go-discover's: one
``host:port`` per complete instance, the IPv6 address when ``v6`` allows it, else the IPv4
address when ``v4`` allows it.

:func:`mdns_addrs` is the Twisted adapter: a UDP socket on an ephemeral port sends the question
(with the unicast-response bit, so responders answer this socket directly) to the mDNS group
224.0.0.251:5353 and collects answers until the lookup's ``timeout`` (go-discover's default
5 s). Replies that do not parse are dropped and counted in one rate-limited log line per peer.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterable, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from wanfedtx.config.discover import MDNSQuery
from wanfedtx.hostport import join_host_port
from wanfedtx.ratelog import RateLimitedLog

log = Logger(namespace="agent.discover.mdns")

MDNS_GROUP_V4 = ("224.0.0.251", 5353)
TYPE_A, TYPE_PTR, TYPE_TXT, TYPE_AAAA, TYPE_SRV = 1, 12, 16, 28, 33
CLASS_IN = 1
UNICAST_RESPONSE = 0x8000  # the top bit of a question's class (RFC 6762 section 5.4)
MAX_MESSAGE = 9000  # RFC 6762 section 17: mDNS messages up to the interface MTU
MAX_POINTERS = 32


class DNSFormatError(ValueError):
    """A DNS message that cannot be decoded; the message says where it went wrong."""


@attrs.frozen
class Record:
    name: str
    type: int
    data: bytes
    """The RDATA, with names already expanded for PTR/SRV (see :func:`decode`)."""
    target: str = ""
    """The name a PTR points at, or an SRV's target host."""
    port: int = 0


def _name(labels: str) -> bytes:
    out = b""
    for label in labels.strip(".").split("."):
        raw = label.encode("utf-8")
        if not 0 < len(raw) < 64:
            raise DNSFormatError(f"invalid DNS label {label!r} in {labels!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def encode_query(name: str, qtype: int = TYPE_PTR, *, unicast: bool = True, qid: int = 0) -> bytes:
    """A one-question query (mDNS uses id 0 and no recursion)."""
    qclass = CLASS_IN | (UNICAST_RESPONSE if unicast else 0)
    return struct.pack("!6H", qid, 0, 1, 0, 0, 0) + _name(name) + struct.pack("!2H", qtype, qclass)


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` and the offset after it (pointers followed, loops refused)."""
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if pos >= len(msg):
            raise DNSFormatError("name runs past the end of the message")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise DNSFormatError("truncated compression pointer")
            hops += 1
            if hops > MAX_POINTERS:
                raise DNSFormatError("compression pointer loop")
            if end < 0:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            continue
        if n & 0xC0:
            raise DNSFormatError(f"unsupported label type 0x{n:02x}")
        pos += 1
        if n == 0:
            break
        if pos + n > len(msg):
            raise DNSFormatError("label runs past the end of the message")
        labels.append(msg[pos : pos + n].decode("utf-8", "replace"))
        pos += n
    return ".".join(labels) + ".", (end if end >= 0 else pos)


def decode(msg: bytes) -> list[Record]:
    """The answer, authority and additional records of a response (questions skipped)."""
    if len(msg) < 12:
        raise DNSFormatError("message shorter than a DNS header")
    _, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    if not flags & 0x8000:
        return []  # a query, not a response
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(msg, pos)
        pos += 4
    records: list[Record] = []
    for _ in range(an + ns + ar):
        name, pos = _read_name(msg, pos)
        if pos + 10 > len(msg):
            raise DNSFormatError("truncated resource record header")
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        pos += 10
        if pos + rdlen > len(msg):
            raise DNSFormatError("resource record data runs past the end of the message")
        data = msg[pos : pos + rdlen]
        if rtype == TYPE_PTR:
            target, _ = _read_name(msg, pos)
            records.append(Record(name.lower(), rtype, data, target.lower()))
        elif rtype == TYPE_SRV:
            if rdlen < 7:
                raise DNSFormatError("SRV record too short")
            (port,) = struct.unpack("!H", data[4:6])
            target, _ = _read_name(msg, pos + 6)
            records.append(Record(name.lower(), rtype, data, target.lower(), port))
        elif (rtype == TYPE_A and rdlen == 4) or (rtype == TYPE_AAAA and rdlen == 16) or (
            rtype == TYPE_TXT
        ):
            records.append(Record(name.lower(), rtype, data))
        pos += rdlen
    return records


@attrs.define
class _Instance:
    host: str = ""
    port: int = 0
    v4: str = ""
    v6: str = ""
    txt: bool = False

    def complete(self) -> bool:
        return bool((self.v4 or self.v6) and self.port and self.txt)


class Browse:
    """The answers to one browse of ``service_name`` (``<service>.<domain>.``), gathered."""

    def __init__(self, service_name: str, v6: bool = True, v4: bool = True) -> None:
        self.service_name = service_name.lower()
        self.v6 = v6
        self.v4 = v4
        self.instances: dict[str, _Instance] = {}
        self._v4: dict[str, str] = {}
        self._v6: dict[str, str] = {}
        self._txt: set[str] = set()

    def feed(self, records: Iterable[Record]) -> None:
        records = list(records)
        for r in records:
            if r.type == TYPE_PTR and r.name == self.service_name:
                self.instances.setdefault(r.target, _Instance())
        for r in records:
            if r.type == TYPE_SRV and r.name in self.instances:
                inst = self.instances[r.name]
                inst.host, inst.port = r.target, r.port
            elif r.type == TYPE_A:
                self._v4[r.name] = str(ipaddress.IPv4Address(r.data))
            elif r.type == TYPE_AAAA:
                self._v6[r.name] = str(ipaddress.IPv6Address(r.data))
            elif r.type == TYPE_TXT:
                self._txt.add(r.name)
        for name, inst in self.instances.items():
            inst.txt = inst.txt or name in self._txt
            inst.v4 = inst.v4 or self._v4.get(inst.host, "")
            inst.v6 = inst.v6 or self._v6.get(inst.host, "")

    def addrs(self) -> list[str]:
        """go-discover's answer: ``host:port`` per complete instance, IPv6 first when allowed."""
        out = []
        for inst in self.instances.values():
            if not inst.complete():
                continue
            if self.v6 and inst.v6:
                out.append(join_host_port(inst.v6, inst.port))
            elif self.v4 and inst.v4:
                out.append(join_host_port(inst.v4, inst.port))
        return out


def service_name(query: MDNSQuery) -> str:
    return f"{query.service.strip('.')}.{query.domain.strip('.')}."


class _Client(DatagramProtocol):
    def __init__(self, browse: Browse, rate_log: RateLimitedLog) -> None:
        self.browse = browse
        self.rate_log = rate_log

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        try:
            self.browse.feed(decode(datagram[:MAX_MESSAGE]))
        except (DNSFormatError, ValueError) as e:
            self.rate_log.warn(
                "mdns-reply",
                "dropped an mDNS reply that does not decode: peer={peer} error={error}",
                peer=join_host_port(addr[0], addr[1]),
                error=str(e),
            )


def mdns_addrs(
    reactor: IReactorUDP,
    clock: IReactorTime,
    query: MDNSQuery,
    targets: Sequence[tuple[str, int]] = (MDNS_GROUP_V4,),
    rng: random.Random | None = None,
) -> Deferred[list[str]]:
    """Browse for ``query`` on the LAN; fires with the addresses found within its timeout."""
    browse = Browse(service_name(query), query.v6, query.v4)
    proto = _Client(browse, RateLimitedLog(log, clock))
    port = reactor.listenUDP(0, proto, interface="0.0.0.0", maxPacketSize=MAX_MESSAGE)
    packet = encode_query(service_name(query), qid=(rng or random.Random()).randrange(1 << 16))
    transport = proto.transport
    for target in targets:
        try:
            if transport is not None:
                transport.write(packet, target)
        except OSError as e:
            log.warn("mDNS query to {target} failed: {error}", target=target, error=str(e))
    done: Deferred[list[str]] = Deferred()

    def finish() -> None:
        d = port.stopListening()
        if isinstance(d, Deferred):
            d.addBoth(lambda _: done.callback(browse.addrs()))
        else:
            done.callback(browse.addrs())

    clock.callLater(query.timeout, finish)
    return done
