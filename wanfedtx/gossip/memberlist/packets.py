# -*- test-case-name: tests.unit.gossip -*-
"""Receiving packets: decrypt, CRC, unpack, dispatch; ping and indirect-ping handling, acks."""

from __future__ import annotations

from wanfedtx.hostport import format_host

from .. import wire
from ..errors import NodeNamesRequired, WireError
from ..interfaces import Address
from .base import MemberlistBase
from .node import ip_bytes, ip_string, log


class PacketsMixin(MemberlistBase):
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
                from ..security import decrypt_payload

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
