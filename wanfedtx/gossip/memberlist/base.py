# -*- test-case-name: tests.unit.gossip -*-
"""The memberlist core's state, lifecycle and send path; the mixins of the package add the rest."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.ratelog import RateLimitedLog

from .. import wire
from ..config import MemberlistConfig
from ..errors import GossipError, NodeNamesRequired
from ..interfaces import Address, IGossipTransport, IStreamSink
from ..security import encrypt_overhead, encrypt_payload
from ..stream import StreamReader, encode_stream
from .broadcast import BroadcastQueue
from .lifeguard import Awareness, Suspicion
from .node import Delegate, Node, NodeInfo, log
from .nodestate import Local
from .session import _StreamSession


@attrs.define
class _AckHandler:
    on_ack: Callable[[bytes, float], None]
    on_nack: Callable[[], None] | None
    timer: IDelayedCall


class MemberlistBase:
    """State shared by the mixins; the hooks at the end are implemented by them."""

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
        #: the local node as ``nodestate`` sees it (state.StateMixin._local keeps it current)
        self._local_view: Local | None = None
        self.advertise_ip, self.advertise_port = transport.final_advertise_addr(
            config.advertise_addr or config.bind_addr, config.advertise_port or config.bind_port
        )
        transport.set_handlers(self.ingest_packet, self._new_inbound_stream)
        self._set_alive()

    # -- lifecycle

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

    # -- queries

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

    # -- hooks the mixins implement (packets, pushpull, state)

    def ingest_packet(self, buf: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        raise NotImplementedError

    def _new_inbound_stream(self) -> IStreamSink:
        raise NotImplementedError

    def _handle_inbound_stream(self, msg: wire.StreamMessage, session: _StreamSession) -> None:
        raise NotImplementedError

    def push_pull_node(self, address: Address, join: bool) -> Deferred[None]:
        raise NotImplementedError

    def _set_alive(self) -> None:
        raise NotImplementedError

    def _alive_node(self, a: wire.Alive, bootstrap: bool = False) -> None:
        raise NotImplementedError

    def _suspect_node(self, s: wire.Suspect) -> None:
        raise NotImplementedError

    def _dead_node(self, d: wire.Dead, on_done: Callable[[], None] | None = None) -> None:
        raise NotImplementedError
