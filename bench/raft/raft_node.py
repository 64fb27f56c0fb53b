"""One raft server process for benchmarks and the kill-the-leader test: a KV FSM behind
``RaftService`` on a real RPC port (type byte 1), plus a tiny client port.

Client protocol: frames ``u32 length | msgpack``; requests ``[rid, "put", key, value]`` and
``[rid, "get", key]`` (linearizable: ``verify_leader`` first); replies ``[rid, "ok", value]`` or
``[rid, "err", message, leader_client_addr_or_""]``.

    python bench/raft/raft_node.py --raft 127.0.0.1:7301 --client 127.0.0.1:7401 \
        --data-dir /tmp/n1 --peer 127.0.0.1:7302=127.0.0.1:7402=n2 --peer ... \
        [--tls-dir DIR --node-name n1]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogBeginner, textFileLogObserver

from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.errors import NotLeaderError
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import RaftHandler, StreamTransport
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory

reactor: Any = _reactor
_LEN = struct.Struct(">I")


class KV:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, index: int, data: bytes) -> Any:
        k, v = msgpack.unpackb(data)
        self.data[k] = v
        return index

    def snapshot(self) -> Iterator[bytes]:
        yield msgpack.packb(self.data)

    def restore(self, chunks: Iterable[bytes], last_index: int = 0) -> None:
        self.data = {}
        for c in chunks:
            self.data.update(msgpack.unpackb(c))


class ClientProto(Protocol):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < 4 + n:
                return
            req = msgpack.unpackb(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
            self.handle(req)

    def reply(self, msg: list[Any]) -> None:
        if self.transport is not None:
            body = msgpack.packb(msg)
            self.transport.write(_LEN.pack(len(body)) + body)

    def error(self, rid: int, exc: BaseException) -> None:
        leader = self.node.svc.leader_address()
        self.reply([rid, "err", f"{type(exc).__name__}: {exc}", self.node.clients.get(leader, "")])

    def handle(self, req: list[Any]) -> None:
        rid, op = req[0], req[1]
        svc = self.node.svc
        if op == "put":
            d = svc.apply(msgpack.packb([req[2], req[3]]))
            d.addCallbacks(lambda r: self.reply([rid, "ok", r[0]]),
                           lambda f: self.error(rid, f.value))
        elif op == "get":
            key = req[2]
            d2 = svc.verify_leader()
            d2.addCallbacks(lambda _: self.reply([rid, "ok", self.node.fsm.data.get(key)]),
                            lambda f: self.error(rid, f.value))
        else:
            self.error(rid, NotLeaderError(f"unknown op {op!r}"))


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.clients: dict[str, str] = {}
        names: dict[str, str] = {}
        for spec in args.peer:
            raft, client, *name = spec.split("=")
            self.clients[raft] = client
            names[raft] = name[0] if name else ""
        self.clients[args.raft] = args.client
        tls = None
        if args.tls_dir:
            from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings

            d = args.tls_dir
            tls = TLSConfigurator(TLSSettings(
                ca_file=f"{d}/consul-agent-ca.pem", cert_file=f"{d}/dc1-server-consul-0.pem",
                key_file=f"{d}/dc1-server-consul-0-key.pem", verify_incoming=True,
                verify_outgoing=True, verify_server_hostname=True, node_name=args.node_name,
                datacenter="dc1"))
        handler = RaftHandler()
        reg = HandlerRegistry()
        reg.register(RPCType.RAFT, handler)
        host, port = args.raft.rsplit(":", 1)
        reactor.listenTCP(int(port), RPCPortFactory(reg, reactor, tls), interface=host)
        dialer = Dialer(reactor, "dc1", server=True, tls=tls, timeout=2.0)
        self.fsm = KV()
        self.svc = RaftService(
            node_id=args.raft, data_dir=args.data_dir, fsm=self.fsm,
            transport=StreamTransport(reactor, lambda a, p: dialer.dial_directly(
                "dc1", names.get(a, ""), a, RPCType.RAFT, tls is not None, p), handler),
            reactor=reactor, peers=list(self.clients), bootstrap_expect=len(self.clients),
            options=RaftOptions(election_timeout=args.election_timeout,
                                heartbeat_interval=args.election_timeout / 10),
            rng=random.Random(), snapshot_threshold=args.snapshot_threshold)
        f = Factory.forProtocol(lambda: ClientProto(self))
        chost, cport = args.client.rsplit(":", 1)
        reactor.listenTCP(int(cport), f, interface=chost)
        self.svc.startService()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raft", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--peer", action="append", default=[],
                    help="raft_addr=client_addr[=node_name]")
    ap.add_argument("--tls-dir", default="",
                    help="directory with consul-agent-ca.pem and dc1-server-consul-0{,-key}.pem: "
                         "raft traffic uses TLS (RPC type 3 + inner type 1), verify_incoming on")
    ap.add_argument("--node-name", default="")
    ap.add_argument("--election-timeout", type=float, default=1.0)
    ap.add_argument("--snapshot-threshold", type=int, default=8192)
    ap.add_argument("--log", action="store_true")
    args = ap.parse_args()
    if args.log:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    Node(args)
    reactor.run()


if __name__ == "__main__":
    main()
