# -*- test-case-name: tests.unit.gossip -*-
"""Periodic work: probes (direct, indirect, TCP fallback), gossip and push/pull ticks."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .. import wire
from ..errors import GossipError, NodeNamesRequired
from ..wire import NodeStateType
from .base import MemberlistBase
from .node import Node, ip_bytes, log, push_pull_scale
from .session import _StreamSession


@attrs.define
class _ProbeState:
    acked: bool = False
    nacks: int = 0
    expected_nacks: int = 0
    phase: int = 1
    tcp: bool | None = None


class ProbeMixin(MemberlistBase):
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
