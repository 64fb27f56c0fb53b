"""Sans-IO memberlist core: SWIM failure detection with Lifeguard, gossip, push/pull anti-entropy.

Behaviour follows hashicorp/memberlist 0.2.2 (spec memberlist-wire.md section 4.9): probes (direct,
indirect with nacks, TCP fallback switchable per node), suspicion whose timeout shrinks with
independent confirmations, awareness (local health) scaling probe timeouts, refutation, dead and
left, retransmit limits, push/pull with join, node names on every send, ``name/addr`` join syntax.

No sockets here: packets and streams go through an ``IGossipTransport``; time comes from an injected
``IReactorTime`` and randomness from an injected ``random.Random``.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.ratelog import RateLimitedLog

from . import wire
from .config import MemberlistConfig
from .errors import GossipError, JoinError, NodeNamesRequired, WireError
from .interfaces import Address, IGossipTransport, IStreamSink, IStreamWriter
from .security import encrypt_overhead, encrypt_payload
from .stream import StreamReader, encode_stream
from .wire import NodeStateType

log = Logger(namespace="wanfedtx.gossip.memberlist")

MAX_PUSH_PULL_REQUESTS = 128
PUSH_PULL_SCALE_THRESHOLD = 32


# ------------------------------------------------------------------------------------------
# Node state and delegates


@attrs.define(eq=False)
class Node:
    """A member as the core knows it."""

    name: str
    addr: bytes
    port: int
    meta: bytes = b""
    incarnation: int = 0
    state: NodeStateType = NodeStateType.DEAD
    state_change: float = 0.0
    vsn: bytes = b"\x00" * 6

    @property
    def ip(self) -> str:
        return ip_string(self.addr)

    def address(self) -> Address:
        return Address(f"{format_host(self.ip)}:{self.port}", self.name)

    @property
    def pmax(self) -> int:
        return wire.vsn_tuple(self.vsn)[1]

    def dead_or_left(self) -> bool:
        return self.state in (NodeStateType.DEAD, NodeStateType.LEFT)

    def snapshot(self) -> NodeInfo:
        return NodeInfo(
            self.name, self.ip, self.port, self.meta, self.incarnation, self.state, self.vsn
        )


@attrs.frozen
class NodeInfo:
    """An immutable view of a member handed to delegates and callers."""

    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: NodeStateType
    vsn: bytes


class Delegate:
    """Hooks for the layer above (serf); every method has a harmless default."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, data: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        pass

    def notify_join(self, node: NodeInfo) -> None:
        pass

    def notify_leave(self, node: NodeInfo) -> None:
        pass

    def notify_update(self, node: NodeInfo) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: NodeInfo, rtt: float, payload: bytes) -> None:
        pass

    def notify_merge(self, peers: list[NodeInfo]) -> str | None:
        """Return an error string to refuse a push/pull merge (serf's MergeDelegate)."""
        return None

    def notify_alive(self, node: NodeInfo) -> str | None:
        """Return an error string to ignore an alive message (memberlist's AliveDelegate)."""
        return None


def ip_string(addr: bytes) -> str:
    if len(addr) == 4:
        return str(ipaddress.IPv4Address(addr))
    if len(addr) == 16:
        v6 = ipaddress.IPv6Address(addr)
        return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
    return ""


def ip_bytes(ip: str) -> bytes:
    a = ipaddress.ip_address(ip)
    return a.packed


def format_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def split_host_port(hp: str) -> tuple[str, int]:
    if hp.startswith("["):
        host, _, rest = hp[1:].partition("]")
        return host, int(rest.lstrip(":"))
    host, _, port = hp.rpartition(":")
    return host, int(port)


def parse_join_address(spec: str, default_port: int) -> Address:
    """``[name/]host[:port]`` -> ``Address`` with an IP host (memberlist 0.2.2 join syntax)."""
    name = ""
    if "/" in spec:
        name, _, spec = spec.partition("/")
        if not name:
            raise JoinError("empty node name provided")
    host, port = spec, default_port
    if spec.startswith("["):
        h, _, rest = spec[1:].partition("]")
        host = h
        if rest.startswith(":"):
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise JoinError(f"join address {host!r} is not an IP address; use ip[:port]") from None
    return Address(f"{format_host(host)}:{port}", name)


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000) / 1000 * interval


def retransmit_limit(mult: int, n: int) -> int:
    return mult * math.ceil(math.log10(n + 1))


def push_pull_scale(interval: float, n: int) -> float:
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    return (math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0) * interval


# ------------------------------------------------------------------------------------------
# Broadcast queue (TransmitLimitedQueue)


@attrs.define(eq=False)
class _Broadcast:
    name: str | None
    msg: bytes
    seq: int
    transmits: int = 0
    on_done: Callable[[], None] | None = None


class BroadcastQueue:
    """Queued gossip: fewest-transmitted first, newest first; dropped after the retransmit limit."""

    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self.num_nodes = num_nodes
        self._items: list[_Broadcast] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self, msg: bytes, name: str | None = None, on_done: Callable[[], None] | None = None
    ) -> None:
        if name is not None:
            for old in [b for b in self._items if b.name == name]:
                self._items.remove(old)
                if old.on_done is not None:
                    old.on_done()
        self._seq += 1
        self._items.append(_Broadcast(name, msg, self._seq, on_done=on_done))

    def get(self, overhead: int, limit: int) -> list[bytes]:
        if not self._items:
            return []
        lim = retransmit_limit(self.retransmit_mult, self.num_nodes())
        used = 0
        out: list[bytes] = []
        for b in sorted(self._items, key=lambda b: (b.transmits, -b.seq)):
            cost = overhead + len(b.msg)
            if used + cost > limit:
                continue
            used += cost
            out.append(b.msg)
            b.transmits += 1
            if b.transmits >= lim:
                self._items.remove(b)
                if b.on_done is not None:
                    b.on_done()
        return out

    def reset(self) -> None:
        self._items.clear()


# ------------------------------------------------------------------------------------------
# Suspicion and awareness


class Awareness:
    """Lifeguard local health: 0 is healthy; timeouts scale by (score + 1)."""

    def __init__(self, max_multiplier: int) -> None:
        self.max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)


class Suspicion:
    """A suspicion timer that shrinks from ``max`` toward ``min`` with independent confirmations."""

    def __init__(
        self,
        clock: IReactorTime,
        from_: str,
        k: int,
        min_t: float,
        max_t: float,
        fire: Callable[[int], None],
    ) -> None:
        self.clock = clock
        self.k = k
        self.min = min_t
        self.max = max_t
        self.n = 0
        self.confirmations = {from_}
        self.start = clock.seconds()
        self._fire = fire
        timeout = max_t if k >= 1 else min_t
        self.timer: IDelayedCall = clock.callLater(timeout, self._fired)

    def _fired(self) -> None:
        self._fire(self.n)

    def remaining(self) -> float:
        frac = math.log(self.n + 1.0) / math.log(self.k + 1.0)
        raw = self.max - frac * (self.max - self.min)
        timeout = math.floor(1000.0 * raw) / 1000.0
        timeout = max(timeout, self.min)
        return timeout - (self.clock.seconds() - self.start)

    def confirm(self, from_: str) -> bool:
        if self.n >= self.k or from_ in self.confirmations:
            return False
        self.confirmations.add(from_)
        self.n += 1
        left = self.remaining()
        if self.timer.active():
            if left > 0:
                self.timer.reset(left)
            else:
                self.timer.cancel()
                self.clock.callLater(0, self._fired)
        return True

    def cancel(self) -> None:
        if self.timer.active():
            self.timer.cancel()


# ------------------------------------------------------------------------------------------
# Stream sessions


@implementer(IStreamSink)
class _StreamSession:
    """One stream exchange; ``outbound`` sessions send first, inbound ones read first."""

    def __init__(
        self,
        ml: Memberlist,
        first: bytes | None = None,
        on_message: Callable[[wire.StreamMessage | None, str | None], None] | None = None,
        expect_reply: bool = False,
    ) -> None:
        self.ml = ml
        self.first = first
        self.on_message = on_message
        self.expect_reply = expect_reply
        self.writer: IStreamWriter | None = None
        self.reader = ml._stream_reader()
        self.done = False
        self.timeout: IDelayedCall | None = None

    def connection_made(self, writer: IStreamWriter) -> None:
        self.writer = writer
        self.timeout = self.ml.clock.callLater(self.ml.config.tcp_timeout, self._timed_out)
        if self.first is not None:
            writer.write(self.first)
            if not self.expect_reply:
                self._finish(None, None)
                writer.close()

    def _timed_out(self) -> None:
        self.timeout = None
        self._finish(None, "i/o timeout")
        if self.writer is not None:
            self.writer.close()

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            msg = self.reader.feed(data)
        except WireError as exc:
            self.ml.peer_log.warn(
                "stream",
                "memberlist: failed to receive: {error} from={src}",
                error=str(exc),
                src=_writer_peer(self.writer),
            )
            if self.first is None and self.writer is not None:
                # Responder: tell the peer what was wrong, like memberlist's errResp.
                self.writer.write(self.ml._wrap_stream(wire.ErrResp(str(exc)).encode()))
            self._finish(None, str(exc))
            if self.writer is not None:
                self.writer.close()
            return
        if msg is not None:
            self._finish(msg, None)

    def connection_lost(self, reason: str | None) -> None:
        self._finish(None, reason or "connection closed before a whole message arrived")

    def _finish(self, msg: wire.StreamMessage | None, err: str | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None
        if self.on_message is not None:
            cb, self.on_message = self.on_message, None
            cb(msg, err)
        elif msg is not None:
            self.ml._handle_inbound_stream(msg, self)


# ------------------------------------------------------------------------------------------
# The core


@attrs.define
class _ProbeState:
    acked: bool = False
    nacks: int = 0
    expected_nacks: int = 0
    phase: int = 1
    tcp: bool | None = None


@attrs.define
class _AckHandler:
    on_ack: Callable[[bytes, float], None]
    on_nack: Callable[[], None] | None
    timer: IDelayedCall


class Memberlist:
    """One memberlist node. Create, ``start()``, ``join([...])``, ``leave()``, ``shutdown()``."""

    def __init__(
        self,
        config: MemberlistConfig,
        transport: IGossipTransport,
        clock: IReactorTime,
        rng: random.Random | None = None,
        delegate: Delegate | None = None,
        registry: Registry | None = None,
    ) -> None:
        config.validate()
        reg = registry if registry is not None else REGISTRY
        self._m_udp_sent = reg.counter("memberlist.udp.sent", "Bytes of gossip packets sent")
        self._m_udp_recv = reg.counter(
            "memberlist.udp.received", "Bytes of gossip packets received"
        )
        self._m_msg = {
            t: reg.counter(f"memberlist.msg.{t}", f"{t} messages received")
            for t in ("alive", "suspect", "dead")
        }
        self._m_degraded = reg.counter(
            "memberlist.degraded.probe", "Probes sent with an interval scaled by awareness"
        )
        self._m_health = reg.gauge(
            "memberlist.health.score", "Lifeguard local health score (0 is healthy)"
        )
        self.config = config
        self.transport = transport
        self.clock = clock
        #: lines a peer's bad input causes: per-reason budget, then a summary (wanfedtx.ratelog)
        self.peer_log = RateLimitedLog(log, clock)
        self.rng = rng or random.Random()
        self.delegate = delegate or Delegate()
        self.nodes: list[Node] = []
        self.node_map: dict[str, Node] = {}
        self.suspicions: dict[str, Suspicion] = {}
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.broadcasts = BroadcastQueue(config.retransmit_mult, self.estimate_num_nodes)
        self.seq_no = 0
        self.incarnation = 0
        self.num_nodes = 0
        self.leaving = False
        self.shutdown_done = False
        self.ack_handlers: dict[int, _AckHandler] = {}
        self.probe_index = 0
        self.push_pull_inflight = 0
        self._timers: list[IDelayedCall] = []
        self._probe_call: IDelayedCall | None = None
        self._gossip_call: IDelayedCall | None = None
        self._pushpull_call: IDelayedCall | None = None
        self.stats: dict[str, int] = {"packets_in": 0, "packets_out": 0, "bytes_out": 0}
        self.advertise_ip, self.advertise_port = transport.final_advertise_addr(
            config.advertise_addr or config.bind_addr, config.advertise_port or config.bind_port
        )
        transport.set_handlers(self.ingest_packet, self._new_inbound_stream)
        self._set_alive()

    # -- lifecycle

    def start(self) -> None:
        """Start the probe, gossip and push/pull loops (after a random stagger, like Go)."""
        if self.config.probe_interval > 0:
            self._probe_call = self.clock.callLater(
                self.rng.random() * self.config.probe_interval, self._probe_tick
            )
        if self.config.gossip_interval > 0 and self.config.gossip_nodes > 0:
            self._gossip_call = self.clock.callLater(
                self.rng.random() * self.config.gossip_interval, self._gossip_tick
            )
        if self.config.push_pull_interval > 0:
            self._pushpull_call = self.clock.callLater(
                self.rng.random() * self.config.push_pull_interval, self._push_pull_tick
            )

    def _stop_loops(self) -> None:
        for c in (self._probe_call, self._gossip_call, self._pushpull_call):
            if c is not None and c.active():
                c.cancel()
        self._probe_call = self._gossip_call = self._pushpull_call = None

    def shutdown(self) -> Deferred[None]:
        """Stop every loop and timer and shut the transport down (no leave message)."""
        if self.shutdown_done:
            return succeed(None)
        self.shutdown_done = True
        self._stop_loops()
        for s in self.suspicions.values():
            s.cancel()
        self.suspicions.clear()
        for h in self.ack_handlers.values():
            if h.timer.active():
                h.timer.cancel()
        self.ack_handlers.clear()
        self.peer_log.stop()
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers.clear()
        return self.transport.shutdown()

    def _call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> IDelayedCall:
        self._timers = [t for t in self._timers if t.active()]
        c = self.clock.callLater(delay, fn, *args)
        self._timers.append(c)
        return c

    # -- public API

    @property
    def name(self) -> str:
        return self.config.name

    def local_node(self) -> NodeInfo:
        return self.node_map[self.name].snapshot()

    def members(self) -> list[NodeInfo]:
        """Nodes that are not dead or left (like memberlist's Members)."""
        return [n.snapshot() for n in self.nodes if not n.dead_or_left()]

    def all_nodes(self) -> list[NodeInfo]:
        return [n.snapshot() for n in self.nodes]

    def estimate_num_nodes(self) -> int:
        return max(self.num_nodes, 1)

    def num_alive(self) -> int:
        return sum(1 for n in self.nodes if not n.dead_or_left())

    def health_score(self) -> int:
        return self.awareness.score

    def vsn(self) -> bytes:
        c = self.config
        return wire.make_vsn(
            wire.PROTOCOL_VERSION_MIN,
            wire.PROTOCOL_VERSION_MAX,
            c.protocol_version,
            c.delegate_protocol_min,
            c.delegate_protocol_max,
            c.delegate_protocol_version,
        )

    def join(self, existing: Sequence[str]) -> Deferred[int]:
        """Push/pull (join=True) with each address; fire with how many were contacted."""
        results: list[Deferred[bool]] = []
        errors: list[str] = []
        for spec in existing:
            try:
                addr = parse_join_address(spec, self.config.bind_port)
            except (JoinError, ValueError) as exc:
                errors.append(f"Failed to resolve {spec}: {exc}")
                continue
            results.append(self._join_one(addr, spec, errors))
        out: Deferred[int] = Deferred()
        pending = len(results)
        contacted = 0

        def finish() -> None:
            if contacted == 0:
                out.errback(JoinError("; ".join(errors) or "no addresses to join"))
            else:
                out.callback(contacted)

        def done_one(r: bool) -> None:
            nonlocal pending, contacted
            pending -= 1
            contacted += int(r)
            if pending == 0:
                finish()

        if not results:
            finish()
        for d in results:
            d.addCallback(done_one)
        return out

    def _join_one(self, addr: Address, spec: str, errors: list[str]) -> Deferred[bool]:
        result: Deferred[bool] = Deferred()

        def ok(_: None) -> None:
            result.callback(True)

        def failed(f: Failure) -> None:
            errors.append(f"Failed to join {spec}: {f.getErrorMessage()}")
            result.callback(False)

        self.push_pull_node(addr, join=True).addCallbacks(ok, failed)
        return result

    def leave(self, timeout: float = 5.0) -> Deferred[None]:
        """Broadcast our intent to leave (dead about ourselves) and wait until it is sent."""
        if self.leaving:
            return succeed(None)
        self.leaving = True
        me = self.node_map[self.name]
        if me.dead_or_left():
            return succeed(None)
        done: Deferred[None] = Deferred()
        fired = False

        def finished() -> None:
            nonlocal fired
            if not fired:
                fired = True
                if t.active():
                    t.cancel()
                done.callback(None)

        def timed_out() -> None:
            nonlocal fired
            if not fired:
                fired = True
                done.errback(GossipError("timeout waiting for leave broadcast"))

        t = self._call_later(timeout, timed_out)
        any_alive = any(
            n.state != NodeStateType.DEAD and n.name != self.name and not n.dead_or_left()
            for n in self.nodes
        )
        self._dead_node(wire.Dead(me.incarnation, me.name, me.name), on_done=finished)
        if not any_alive:
            finished()
        return done

    def update_node(self) -> None:
        """Re-read our meta from the delegate and broadcast it with a new incarnation."""
        me = self.node_map[self.name]
        meta = self._meta()
        inc = self._next_incarnation()
        a = wire.Alive(inc, self.name, me.addr, me.port, meta, self.vsn())
        self._alive_node(a, bootstrap=True)

    def send_best_effort(self, node: str, msg: bytes) -> None:
        """A user message by UDP (type 8 + raw bytes)."""
        n = self.node_map.get(node)
        if n is None:
            raise GossipError(f"unknown node {node!r}")
        self._raw_send_packet(n.address(), n, bytes((wire.MsgType.USER,)) + msg)

    def send_to_address(self, address: Address, msg: bytes) -> None:
        """A user message by UDP to an address (serf query responses use this)."""
        self._raw_send_packet(address, None, bytes((wire.MsgType.USER,)) + msg)

    def send_reliable(self, node: str, msg: bytes) -> Deferred[None]:
        """A user message over a stream (one-way)."""
        n = self.node_map.get(node)
        if n is None:
            raise GossipError(f"unknown node {node!r}")
        body = wire.UserMsgHeader(user_msg_len=len(msg)).encode() + msg
        d: Deferred[None] = Deferred()

        def cb(_msg: wire.StreamMessage | None, err: str | None) -> None:
            if err:
                d.errback(GossipError(f"failed to send user message to {n.name}: {err}"))
            else:
                d.callback(None)

        self._dial(n.address(), _StreamSession(self, self._wrap_stream(body), cb, False))
        return d

    # -- sending

    def _check_name(self, address: Address) -> None:
        if self.config.require_node_names and not address.name:
            raise NodeNamesRequired()

    def _encrypt_overhead(self) -> int:
        if self.config.encryption_enabled() and self.config.gossip_verify_outgoing:
            return encrypt_overhead(self._enc_vsn())
        return 0

    def _enc_vsn(self) -> int:
        return 1 if self.config.protocol_version >= 2 else 0

    def _send_msg(self, address: Address, msg: bytes) -> None:
        """Send ``msg`` piggybacking queued broadcasts when there is room."""
        avail = (
            self.config.udp_buffer_size
            - len(msg)
            - wire.COMPOUND_HEADER_OVERHEAD
            - self._encrypt_overhead()
        )
        extra = self._get_broadcasts(wire.COMPOUND_OVERHEAD, avail)
        if not extra:
            self._raw_send_packet(address, None, msg)
            return
        for c in wire.make_compounds([msg, *extra]):
            self._raw_send_packet(address, None, c)

    def _raw_send_packet(self, address: Address, node: Node | None, msg: bytes) -> None:
        self._check_name(address)
        if self.config.enable_compression:
            c = wire.compress_message(msg)
            if len(c) < len(msg):
                msg = c
        if node is not None and node.pmax >= 5:
            msg = wire.add_crc(msg)
        keyring = self.config.keyring
        if keyring is not None and keyring.keys() and self.config.gossip_verify_outgoing:
            msg = encrypt_payload(
                self._enc_vsn(), keyring.primary_key(), msg, None, self._randbytes
            )
        if self.shutdown_done:
            return
        self.stats["packets_out"] += 1
        self.stats["bytes_out"] += len(msg)
        self._m_udp_sent.inc(len(msg))
        try:
            self.transport.write_to_address(msg, address)
        except (GossipError, OSError, ValueError) as exc:
            log.warn(
                "memberlist: Failed to send packet to {addr}: {error}", addr=str(address), error=exc
            )

    def _randbytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _wrap_stream(self, msg: bytes) -> bytes:
        keys = None
        keyring = self.config.keyring
        if keyring is not None and keyring.keys() and self.config.gossip_verify_outgoing:
            keys = keyring.keys()
        return encode_stream(
            msg,
            compress=self.config.enable_compression,
            keys=keys,
            enc_vsn=self._enc_vsn(),
            random_bytes=self._randbytes,
        )

    def _stream_reader(self) -> StreamReader:
        keys = self.config.keyring.keys() if self.config.keyring is not None else None
        return StreamReader(
            keys=keys,
            require_encryption=self.config.encryption_enabled()
            and self.config.gossip_verify_incoming,
        )

    def _dial(self, address: Address, session: _StreamSession) -> None:
        self._check_name(address)
        if self.shutdown_done:
            session.connection_lost("memberlist is shut down")
            return
        try:
            self.transport.dial_address(address, session, self.config.tcp_timeout)
        except (GossipError, OSError, ValueError) as exc:
            session.connection_lost(f"dial failed: {exc}")

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self.broadcasts.get(overhead, limit)
        used = sum(len(m) + overhead for m in out)
        avail = limit - used
        if avail > overhead + wire.USER_MSG_OVERHEAD:
            for m in self.delegate.get_broadcasts(overhead + wire.USER_MSG_OVERHEAD, avail):
                out.append(bytes((wire.MsgType.USER,)) + m)
        return out

    def _broadcast(
        self, node: str, msg: wire.Body, on_done: Callable[[], None] | None = None
    ) -> None:
        self.broadcasts.queue(msg.encode(), name=node, on_done=on_done)

    # -- receiving packets

    def ingest_packet(self, buf: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        """Handle one received packet (UDP datagram or tunnelled frame). Never raises."""
        if self.shutdown_done:
            return
        self.stats["packets_in"] += 1
        self._m_udp_recv.inc(len(buf))
        src = f"{format_host(from_addr[0])}:{from_addr[1]}"
        if len(buf) < 1:
            self.peer_log.error(
                "packet-short",
                "memberlist: packet too short ({n} bytes) from={src}",
                n=len(buf),
                src=src,
            )
            return
        keyring = self.config.keyring
        if keyring is not None and keyring.keys():  # encryption_enabled(), narrowed for mypy
            try:
                from .security import decrypt_payload

                buf = decrypt_payload(keyring.keys(), buf)
            except WireError as exc:
                if self.config.gossip_verify_incoming:
                    self.peer_log.error(
                        "decrypt",
                        "memberlist: Decrypt packet failed: {error} from={src}",
                        error=str(exc),
                        src=src,
                    )
                    return
        try:
            buf = wire.strip_crc(buf)
        except WireError as exc:
            self.peer_log.warn(
                "checksum", "memberlist: {error} from={src}", error=str(exc), src=src
            )
            return
        got = wire.unpack_packet(buf)
        for p in got.problems:
            self.peer_log.warn(
                "bad-packet",
                "memberlist: dropped part of a packet: {problem} from={src}",
                problem=p,
                src=src,
            )
        for m in got.messages:
            try:
                self._handle_packet_msg(m, from_addr, timestamp)
            except NodeNamesRequired as exc:
                self.peer_log.warn(
                    "node-names", "memberlist: {error} from={src}", error=str(exc), src=src
                )

    def _handle_packet_msg(
        self, m: wire.PacketMessage, from_addr: tuple[str, int], ts: float
    ) -> None:
        if isinstance(m, wire.Ping):
            self._handle_ping(m, from_addr)
        elif isinstance(m, wire.IndirectPingReq):
            self._handle_indirect_ping(m, from_addr)
        elif isinstance(m, wire.AckResp):
            h = self.ack_handlers.pop(m.seq_no, None)
            if h is not None:
                h.timer.cancel()
                h.on_ack(m.payload, ts)
        elif isinstance(m, wire.NackResp):
            h = self.ack_handlers.get(m.seq_no)
            if h is not None and h.on_nack is not None:
                h.on_nack()
        elif isinstance(m, wire.Suspect):
            self._m_msg["suspect"].inc()
            self._suspect_node(m)
        elif isinstance(m, wire.Alive):
            self._m_msg["alive"].inc()
            self._alive_node(m)
        elif isinstance(m, wire.Dead):
            self._m_msg["dead"].inc()
            self._dead_node(m)
        elif isinstance(m, wire.UserMsg):
            if m.data:
                self.delegate.notify_msg(m.data)

    def _reply_address(
        self, from_addr: tuple[str, int], src_addr: bytes, src_port: int, src_node: str
    ) -> Address:
        if src_port > 0 and src_addr:
            return Address(f"{format_host(ip_string(src_addr))}:{src_port}", src_node)
        return Address(f"{format_host(from_addr[0])}:{from_addr[1]}", src_node)

    def _handle_ping(self, p: wire.Ping, from_addr: tuple[str, int]) -> None:
        if p.node and p.node != self.name:
            self.peer_log.warn(
                "unexpected-node",
                "memberlist: Got ping for unexpected node '{node}' from={src}",
                node=p.node,
                src=f"{from_addr[0]}:{from_addr[1]}",
            )
            return
        ack = wire.AckResp(p.seq_no, self.delegate.ack_payload())
        addr = self._reply_address(from_addr, p.source_addr, p.source_port, p.source_node)
        self._send_msg(addr, ack.encode())

    def _handle_indirect_ping(self, ind: wire.IndirectPingReq, from_addr: tuple[str, int]) -> None:
        local_seq = self._next_seq()
        ping = wire.Ping(
            local_seq, ind.node, ip_bytes(self.advertise_ip), self.advertise_port, self.name
        )
        reply_to = self._reply_address(from_addr, ind.source_addr, ind.source_port, ind.source_node)

        def on_ack(_payload: bytes, _ts: float) -> None:
            self._send_msg(reply_to, wire.AckResp(ind.seq_no).encode())

        def on_timeout() -> None:
            if ind.nack:
                self._send_msg(reply_to, wire.NackResp(ind.seq_no).encode())

        self._set_ack_handler(local_seq, on_ack, None, self.config.probe_timeout, on_timeout)
        target = Address(f"{format_host(ip_string(ind.target))}:{ind.port}", ind.node)
        try:
            self._send_msg(target, ping.encode())
        except NodeNamesRequired as exc:
            log.warn("memberlist: Failed to send indirect ping: {error}", error=str(exc))

    def _set_ack_handler(
        self,
        seq: int,
        on_ack: Callable[[bytes, float], None],
        on_nack: Callable[[], None] | None,
        timeout: float,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        def expire() -> None:
            self.ack_handlers.pop(seq, None)
            if on_timeout is not None:
                on_timeout()

        timer = self._call_later(timeout, expire)
        self.ack_handlers[seq] = _AckHandler(on_ack, on_nack, timer)

    def _next_seq(self) -> int:
        self.seq_no = (self.seq_no + 1) & 0xFFFFFFFF
        return self.seq_no

    def _next_incarnation(self) -> int:
        self.incarnation += 1
        return self.incarnation

    # -- streams

    def _new_inbound_stream(self) -> IStreamSink:
        return _StreamSession(self)

    def _handle_inbound_stream(self, msg: wire.StreamMessage, session: _StreamSession) -> None:
        w = session.writer
        if w is None:  # a message is only parsed after connection_made set the writer
            raise GossipError("memberlist: inbound stream message before its connection was made")
        if isinstance(msg, wire.PushPull):
            if self.push_pull_inflight >= MAX_PUSH_PULL_REQUESTS:
                self.peer_log.error(
                    "push-pull-limit",
                    "memberlist: Too many pending push/pull requests from={src}",
                    src=_writer_peer(w),
                )
                w.close()
                return
            w.write(self._wrap_stream(self._local_state(msg.join)))
            w.close()
            self._merge_remote(msg)
            return
        if isinstance(msg, wire.UserMsg):
            w.close()
            if msg.data:
                self.delegate.notify_msg(msg.data)
            return
        if isinstance(msg, wire.Ping):
            if msg.node and msg.node != self.name:
                self.peer_log.warn(
                    "unexpected-node",
                    "memberlist: Got ping for unexpected node {node} from={src}",
                    node=msg.node,
                    src=_writer_peer(w),
                )
                w.close()
                return
            ack = wire.AckResp(msg.seq_no, self.delegate.ack_payload())
            w.write(self._wrap_stream(ack.encode()))
            w.close()
            return
        self.peer_log.error(
            "stream-type",
            "memberlist: Received invalid msgType on a stream: {msg!r} from={src}",
            msg=msg,
            src=_writer_peer(w),
        )
        w.close()

    def _local_state(self, join: bool) -> bytes:
        states = tuple(
            wire.PushNodeState(n.name, n.addr, n.port, n.meta, n.incarnation, int(n.state), n.vsn)
            for n in self.nodes
        )
        user = self.delegate.local_state(join)
        return wire.PushPull(join, states, user).encode()

    def push_pull_node(self, address: Address, join: bool) -> Deferred[None]:
        """Exchange full state with one node over a stream, then merge theirs."""
        d: Deferred[None] = Deferred()
        self.push_pull_inflight += 1

        def cb(msg: wire.StreamMessage | None, err: str | None) -> None:
            self.push_pull_inflight -= 1
            if err is not None or msg is None:
                d.errback(GossipError(err or "no reply"))
                return
            if isinstance(msg, wire.ErrResp):
                d.errback(GossipError(f"remote error: {msg.error}"))
                return
            if not isinstance(msg, wire.PushPull):
                d.errback(
                    GossipError(
                        "received invalid msgType, expected pushPullMsg (6) "
                        f"from {address}: {type(msg).__name__}"
                    )
                )
                return
            try:
                self._merge_remote(msg, raise_errors=True)
            except GossipError as exc:
                d.errback(exc)
                return
            d.callback(None)

        try:
            self._dial(
                address, _StreamSession(self, self._wrap_stream(self._local_state(join)), cb, True)
            )
        except GossipError as exc:
            self.push_pull_inflight -= 1
            return _fail(exc)
        return d

    def _merge_remote(self, msg: wire.PushPull, raise_errors: bool = False) -> None:
        err = self._verify_protocol(msg.nodes)
        if err is None:
            err = self.delegate.notify_merge(
                [
                    NodeInfo(
                        n.name,
                        ip_string(n.addr),
                        n.port,
                        n.meta,
                        n.incarnation,
                        NodeStateType(n.state) if 0 <= n.state <= 3 else NodeStateType.DEAD,
                        n.vsn,
                    )
                    for n in msg.nodes
                ]
            )
        if err is not None:
            log.warn("memberlist: push/pull merge refused: {error}", error=err)
            if raise_errors:
                raise GossipError(err)
            return
        for r in msg.nodes:
            if r.state == NodeStateType.ALIVE:
                self._alive_node(wire.Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn))
            elif r.state == NodeStateType.LEFT:
                self._dead_node(wire.Dead(r.incarnation, r.name, r.name))
            elif r.state in (NodeStateType.DEAD, NodeStateType.SUSPECT):
                self._suspect_node(wire.Suspect(r.incarnation, r.name, self.name))
        if msg.user_state:
            self.delegate.merge_remote_state(msg.user_state, msg.join)

    def _verify_protocol(self, remote: Sequence[wire.PushNodeState]) -> str | None:
        vs: list[tuple[str, tuple[int, ...]]] = [
            (n.name, wire.vsn_tuple(n.vsn)) for n in self.nodes if n.state == NodeStateType.ALIVE
        ]
        vs += [(r.name, wire.vsn_tuple(r.vsn)) for r in remote if r.state == NodeStateType.ALIVE]
        if not vs:
            return None
        pmin = max(v[0] for _, v in vs)
        pmax = min(v[1] for _, v in vs)
        dmin = max(v[3] for _, v in vs)
        dmax = min(v[4] for _, v in vs)
        for name, v in vs:
            if not pmin <= v[2] <= pmax:
                return f"Node '{name}' protocol version ({v[2]}) is incompatible: [{pmin}, {pmax}]"
            if not dmin <= v[5] <= dmax:
                return (
                    f"Node '{name}' delegate protocol version ({v[5]}) is incompatible: "
                    f"[{dmin}, {dmax}]"
                )
        return None

    # -- state machine

    def _meta(self) -> bytes:
        meta = self.delegate.node_meta(wire.META_MAX_SIZE)
        if len(meta) > wire.META_MAX_SIZE:
            raise GossipError("Node meta data provided is longer than the limit")
        return meta

    def _set_alive(self) -> None:
        a = wire.Alive(
            self._next_incarnation(),
            self.name,
            ip_bytes(self.advertise_ip),
            self.advertise_port,
            self._meta(),
            self.vsn(),
        )
        self._alive_node(a, bootstrap=True)

    def _refute(self, me: Node, accused_inc: int) -> None:
        inc = self._next_incarnation()
        if accused_inc >= inc:
            self.incarnation = accused_inc + 1
            inc = self.incarnation
        me.incarnation = inc
        self.awareness.apply_delta(1)
        a = wire.Alive(inc, me.name, me.addr, me.port, me.meta, self.vsn())
        self._broadcast(me.name, a)

    def _alive_node(self, a: wire.Alive, bootstrap: bool = False) -> None:
        if self.leaving and a.node == self.name:
            return
        v = wire.vsn_tuple(a.vsn)
        if len(a.vsn) >= 3 and (v[0] == 0 or v[1] == 0 or v[0] > v[1]):
            log.warn(
                "memberlist: Ignoring an alive message for '{node}' because protocol version(s) "
                "are wrong: {pmin} <= {pcur} <= {pmax} should be >0",
                node=a.node,
                pmin=v[0],
                pcur=v[2],
                pmax=v[1],
            )
            return
        err = self.delegate.notify_alive(
            NodeInfo(
                a.node, ip_string(a.addr), a.port, a.meta, a.incarnation, NodeStateType.ALIVE, a.vsn
            )
        )
        if err is not None:
            log.warn(
                "memberlist: ignoring alive message for '{node}': {error}", node=a.node, error=err
            )
            return
        now = self.clock.seconds()
        state = self.node_map.get(a.node)
        updates_node = False
        if state is None:
            state = Node(a.node, a.addr, a.port, state=NodeStateType.DEAD, state_change=now)
            self.node_map[a.node] = state
            self.nodes.append(state)
            # Insert at a random offset so probes stay spread (like Go).
            if len(self.nodes) > 1:
                i = self.rng.randrange(len(self.nodes))
                self.nodes[-1], self.nodes[i] = self.nodes[i], self.nodes[-1]
            self.num_nodes += 1
        elif state.addr != a.addr or state.port != a.port:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and now - state.state_change > reclaim
            if state.state == NodeStateType.LEFT or (
                state.state == NodeStateType.DEAD and can_reclaim
            ):
                log.info(
                    "memberlist: Updating address for left or failed node {node}",
                    node=state.name,
                )
                updates_node = True
            else:
                log.error(
                    "memberlist: Conflicting address for {node}. Mine: {mine} Theirs: {theirs} "
                    "Old state: {old}",
                    node=state.name,
                    mine=f"{state.ip}:{state.port}",
                    theirs=f"{ip_string(a.addr)}:{a.port}",
                    old=state.state.name,
                )
                return
        is_local = a.node == self.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        s = self.suspicions.pop(a.node, None)
        if s is not None:
            s.cancel()
        old_state = state.state
        old_meta = state.meta
        if not bootstrap and is_local:
            if (
                a.incarnation == state.incarnation
                and a.meta == state.meta
                and wire.vsn_tuple(a.vsn) == wire.vsn_tuple(state.vsn)
            ):
                return
            self._refute(state, a.incarnation)
            log.warn("memberlist: Refuting an alive message for '{node}'", node=a.node)
            return
        self._broadcast(a.node, a)
        state.vsn = bytes(a.vsn)
        state.incarnation = a.incarnation
        state.meta = bytes(a.meta)
        state.addr = bytes(a.addr)
        state.port = a.port
        if state.state != NodeStateType.ALIVE:
            state.state = NodeStateType.ALIVE
            state.state_change = now
        if old_state in (NodeStateType.DEAD, NodeStateType.LEFT):
            self.delegate.notify_join(state.snapshot())
        elif old_meta != state.meta:
            self.delegate.notify_update(state.snapshot())

    def _suspect_node(self, s: wire.Suspect) -> None:
        state = self.node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        timer = self.suspicions.get(s.node)
        if timer is not None:
            if timer.confirm(s.from_):
                self._broadcast(s.node, s)
            return
        if state.state != NodeStateType.ALIVE:
            return
        if state.name == self.name:
            self._refute(state, s.incarnation)
            log.warn("memberlist: Refuting a suspect message (from: {src})", src=s.from_)
            return
        self._broadcast(s.node, s)
        state.incarnation = s.incarnation
        state.state = NodeStateType.SUSPECT
        change_time = self.clock.seconds()
        state.state_change = change_time
        k = self.config.suspicion_mult - 2
        n = self.estimate_num_nodes()
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval)
        max_t = self.config.suspicion_max_timeout_mult * min_t

        def fire(confirmations: int) -> None:
            self.suspicions.pop(s.node, None)
            if state.state == NodeStateType.SUSPECT and state.state_change == change_time:
                log.info(
                    "memberlist: Marking {node} as failed, suspect timeout reached "
                    "({n} peer confirmations)",
                    node=state.name,
                    n=confirmations,
                )
                self._dead_node(wire.Dead(state.incarnation, state.name, self.name))

        self.suspicions[s.node] = Suspicion(self.clock, s.from_, k, min_t, max_t, fire)

    def _dead_node(self, d: wire.Dead, on_done: Callable[[], None] | None = None) -> None:
        state = self.node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        s = self.suspicions.pop(d.node, None)
        if s is not None:
            s.cancel()
        if state.dead_or_left():
            return
        if state.name == self.name and not self.leaving:
            self._refute(state, d.incarnation)
            log.warn("memberlist: Refuting a dead message (from: {src})", src=d.from_)
            return
        self._broadcast(d.node, d, on_done)
        state.incarnation = d.incarnation
        state.state = NodeStateType.LEFT if d.node == d.from_ else NodeStateType.DEAD
        state.state_change = self.clock.seconds()
        self.delegate.notify_leave(state.snapshot())

    # -- periodic work

    def _probe_tick(self) -> None:
        self._probe_call = None
        if self.shutdown_done:
            return
        interval = self.awareness.scale(self.config.probe_interval)
        try:
            self._probe()
        finally:
            if not self.shutdown_done:
                self._probe_call = self.clock.callLater(
                    max(interval, self.config.probe_interval), self._probe_tick
                )

    def _probe(self) -> None:
        checked = 0
        while True:
            if checked >= len(self.nodes):
                return
            if self.probe_index >= len(self.nodes):
                self._reset_nodes()
                self.probe_index = 0
                checked += 1
                continue
            node = self.nodes[self.probe_index]
            self.probe_index += 1
            if node.name == self.name or node.dead_or_left():
                checked += 1
                continue
            self._probe_node(node)
            return

    def _reset_nodes(self) -> None:
        now = self.clock.seconds()
        keep: list[Node] = []
        for n in self.nodes:
            # Like memberlist 0.2.2's moveDeadNodes: only dead (not left) nodes are dropped.
            if (
                n.state == NodeStateType.DEAD
                and now - n.state_change > self.config.gossip_to_the_dead_time
                and n.name != self.name
            ):
                del self.node_map[n.name]
                continue
            keep.append(n)
        self.nodes = keep
        self.num_nodes = len(keep)
        self.rng.shuffle(self.nodes)

    def _probe_node(self, node: Node) -> None:
        probe_interval = self.awareness.scale(self.config.probe_interval)
        if probe_interval > self.config.probe_interval:
            self._m_degraded.inc()
        self._m_health.set(self.awareness.score)
        seq = self._next_seq()
        ping = wire.Ping(
            seq, node.name, ip_bytes(self.advertise_ip), self.advertise_port, self.name
        )
        sent = self.clock.seconds()
        state = _ProbeState()

        def on_ack(payload: bytes, ts: float) -> None:
            if state.acked:
                return
            state.acked = True
            # memberlist: any ack (direct, indirect or after the fallback) counts as healthy.
            self.awareness.apply_delta(-1)
            self.delegate.notify_ping_complete(node.snapshot(), ts - sent, payload)

        def on_nack() -> None:
            state.nacks += 1

        def on_timeout() -> None:
            # End of the probe interval: no ack from any path.
            if state.acked:
                return
            if state.tcp is True:
                self.awareness.apply_delta(-1)
                log.warn(
                    "memberlist: Was able to connect to {node} but other probes failed, "
                    "network may be misconfigured",
                    node=node.name,
                )
                return
            delta = 0
            exp = state.expected_nacks
            if exp > 0:
                if state.nacks < exp:
                    delta += exp - state.nacks
            else:
                delta += 1
            self.awareness.apply_delta(delta)
            log.info("memberlist: Suspect {node} has failed, no acks received", node=node.name)
            self._suspect_node(wire.Suspect(node.incarnation, node.name, self.name))

        self._set_ack_handler(seq, on_ack, on_nack, probe_interval, on_timeout)
        try:
            if node.state == NodeStateType.ALIVE:
                self._send_msg(node.address(), ping.encode())
            else:
                s = wire.Suspect(node.incarnation, node.name, self.name)
                self._raw_send_packet(
                    node.address(), node, wire.make_compound([ping.encode(), s.encode()])
                )
        except NodeNamesRequired as exc:
            log.error("memberlist: Failed to send ping: {error}", error=str(exc))
            return

        def indirect() -> None:
            if state.acked or self.shutdown_done:
                return
            state.phase = 2
            log.debug("memberlist: Failed ping: {node} (timeout reached)", node=node.name)
            peers = self._k_random_nodes(
                self.config.indirect_checks,
                lambda n: n.name in (self.name, node.name) or n.state != NodeStateType.ALIVE,
            )
            for peer in peers:
                nack = peer.pmax >= 4
                if nack:
                    state.expected_nacks += 1
                ind = wire.IndirectPingReq(
                    seq,
                    node.addr,
                    node.port,
                    node.name,
                    nack,
                    ip_bytes(self.advertise_ip),
                    self.advertise_port,
                    self.name,
                )
                try:
                    self._send_msg(peer.address(), ind.encode())
                except NodeNamesRequired as exc:
                    log.error("memberlist: Failed to send indirect ping: {error}", error=str(exc))
            disable = self.config.disable_tcp_pings or (
                self.config.disable_tcp_pings_for_node is not None
                and self.config.disable_tcp_pings_for_node(node.name)
            )
            if not disable and node.pmax >= 3:
                self._tcp_ping(node, ping, sent + probe_interval - self.clock.seconds(), state)

        self._call_later(self.config.probe_timeout, indirect)

    def _tcp_ping(self, node: Node, ping: wire.Ping, timeout: float, state: _ProbeState) -> None:
        def cb(msg: wire.StreamMessage | None, err: str | None) -> None:
            if err is not None:
                log.debug("memberlist: Failed fallback ping: {error}", error=err)
                state.tcp = False
                return
            state.tcp = isinstance(msg, wire.AckResp) and msg.seq_no == ping.seq_no

        session = _StreamSession(self, self._wrap_stream(ping.encode()), cb, True)
        if self.shutdown_done:
            return
        try:
            self.transport.dial_address(node.address(), session, max(timeout, 0.001))
        except (GossipError, OSError, ValueError):
            state.tcp = False

    def _k_random_nodes(self, k: int, exclude: Callable[[Node], bool]) -> list[Node]:
        n = len(self.nodes)
        out: list[Node] = []
        for _ in range(3 * n):
            if len(out) >= k or n == 0:
                break
            cand = self.nodes[self.rng.randrange(n)]
            if exclude(cand) or cand in out:
                continue
            out.append(cand)
        return out

    def _gossip_tick(self) -> None:
        self._gossip_call = None
        if self.shutdown_done:
            return
        try:
            self._gossip()
        finally:
            if not self.shutdown_done:
                self._gossip_call = self.clock.callLater(
                    self.config.gossip_interval, self._gossip_tick
                )

    def _gossip(self) -> None:
        now = self.clock.seconds()

        def exclude(n: Node) -> bool:
            if n.name == self.name:
                return True
            if n.state in (NodeStateType.ALIVE, NodeStateType.SUSPECT):
                return False
            if n.state == NodeStateType.DEAD:
                return now - n.state_change > self.config.gossip_to_the_dead_time
            return True

        peers = self._k_random_nodes(self.config.gossip_nodes, exclude)
        avail = (
            self.config.udp_buffer_size - wire.COMPOUND_HEADER_OVERHEAD - self._encrypt_overhead()
        )
        for peer in peers:
            msgs = self._get_broadcasts(wire.COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            try:
                if len(msgs) == 1:
                    self._raw_send_packet(peer.address(), peer, msgs[0])
                else:
                    for c in wire.make_compounds(msgs):
                        self._raw_send_packet(peer.address(), peer, c)
            except NodeNamesRequired as exc:
                log.error("memberlist: Failed to send gossip: {error}", error=str(exc))

    def _push_pull_tick(self) -> None:
        self._pushpull_call = None
        if self.shutdown_done:
            return
        interval = push_pull_scale(self.config.push_pull_interval, self.estimate_num_nodes())
        self._pushpull_call = self.clock.callLater(interval, self._push_pull_tick)
        peers = self._k_random_nodes(
            1, lambda n: n.name == self.name or n.state != NodeStateType.ALIVE
        )
        if not peers:
            return
        peer = peers[0]
        log.debug(
            "Initiating push/pull sync with: {name} {addr}",
            name=peer.name,
            addr=peer.address().addr,
        )
        d = self.push_pull_node(peer.address(), join=False)
        d.addErrback(
            lambda f: log.warn(
                "memberlist: Push/Pull with {node} failed: {error}",
                node=peer.name,
                error=f.getErrorMessage(),
            )
        )


def _fail(exc: Exception) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.errback(exc)
    return d


def _writer_peer(writer: IStreamWriter | None) -> str:
    """``host:port`` of the peer behind a stream writer (a Twisted protocol), or ``?``."""
    try:
        peer = writer.transport.getPeer()  # type: ignore[union-attr]
        return f"{format_host(peer.host)}:{peer.port}"
    except Exception:
        return "?"
