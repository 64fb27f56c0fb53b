"""Async client of ``raft_node.py``'s client port (Twisted), with leader redirects."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

_LEN = struct.Struct(">I")


class ClientError(Exception):
    def __init__(self, message: str, leader: str) -> None:
        super().__init__(message)
        self.leader = leader


class ClientConn(Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.rid = 0
        self.waiting: dict[int, Deferred[Any]] = {}
        self.closed = False

    def call(self, *req: Any) -> Deferred[Any]:
        self.rid += 1
        d: Deferred[Any] = Deferred()
        if self.closed or self.transport is None:
            d.errback(ConnectionError("connection closed"))
            return d
        self.waiting[self.rid] = d
        body = msgpack.packb([self.rid, *req])
        self.transport.write(_LEN.pack(len(body)) + body)
        return d

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < 4 + n:
                return
            rep = msgpack.unpackb(self.buf[4 : 4 + n])
            self.buf = self.buf[4 + n :]
            d = self.waiting.pop(rep[0], None)
            if d is None:
                continue
            if rep[1] == "ok":
                d.callback(rep[2])
            else:
                d.errback(ClientError(rep[2], rep[3]))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        waiting, self.waiting = self.waiting, {}
        for d in waiting.values():
            d.errback(ConnectionError("connection lost"))


async def connect(reactor: Any, addr: str) -> ClientConn:
    host, port = addr.rsplit(":", 1)
    ep = TCP4ClientEndpoint(reactor, host, int(port), timeout=2)
    conn: ClientConn = await connectProtocol(ep, ClientConn())
    return conn
