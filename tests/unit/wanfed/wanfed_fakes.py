"""Test doubles for the wanfed unit tests: a recording inner transport, a stream sink, a resolver,
and a log capture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from log_support import captured_logs as captured_logs  # the wanfed tests import it here
from rpc_support import Recorder
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol
from zope.interface import implementer

from wanfedtx.gossip.interfaces import (
    Address,
    IGossipTransport,
    IStreamSink,
    IStreamWriter,
    PacketHandler,
)


@implementer(IGossipTransport)
class FakeInner:
    """Records what the wrapped (UDP/TCP) transport is asked to do."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Address]] = []
        self.dialed: list[Address] = []
        self.ingested: list[tuple[bytes, tuple[str, int], float]] = []
        self.stream_protocols: list[Recorder] = []
        self.shut_down = False
        self.handlers: tuple[Any, Any] | None = None

    def set_handlers(self, packet_handler: PacketHandler,
                     stream_handler: Callable[[], IStreamSink]) -> None:
        self.handlers = (packet_handler, stream_handler)

    def final_advertise_addr(self, ip: str, port: int) -> tuple[str, int]:
        return ip, port

    def write_to_address(self, packet: bytes, address: Address) -> float:
        self.written.append((packet, address))
        return 1.0

    def dial_address(self, address: Address, sink: IStreamSink, timeout: float) -> None:
        self.dialed.append(address)

    def ingest_packet(self, packet: bytes, from_addr: tuple[str, int], timestamp: float) -> None:
        self.ingested.append((packet, from_addr, timestamp))

    def ingest_stream(self) -> IProtocol:
        p = Recorder()
        self.stream_protocols.append(p)
        return p

    def shutdown(self) -> Deferred[None]:
        self.shut_down = True
        return succeed(None)


@implementer(IStreamSink)
class Sink:
    """A memberlist stream session stand-in: sends ``hello`` on connect, records the rest."""

    def __init__(self, hello: bytes = b"") -> None:
        self.hello = hello
        self.writer: IStreamWriter | None = None
        self.data = b""
        self.lost: list[str | None] = []

    def connection_made(self, writer: IStreamWriter) -> None:
        self.writer = writer
        if self.hello:
            writer.write(self.hello)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, reason: str | None) -> None:
        self.lost.append(reason)


class Resolver:
    def __init__(self, gateways: dict[str, str]) -> None:
        self.gateways = gateways
        self.asked: list[str] = []

    def pick_gateway(self, dc: str) -> str | None:
        self.asked.append(dc)
        return self.gateways.get(dc)


def formats(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("log_format", "")) for e in events]
