"""Raft over real sockets against an attacker without credentials (plaintext type byte 1 on
servers without TLS): forged AppendEntries / RequestVote from a non-member change no follower's
term or log and never win an election; unfinished frames on many connections stay within the
shared budget and the connections are closed."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_twisted
from raft_support import RaftPortServer, leader, wait_for
from twisted.internet.defer import DeferredList
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from wanfedtx.metrics import Registry
from wanfedtx.raft import messages as m
from wanfedtx.raft.core import LEADER, RaftOptions
from wanfedtx.raft.transport import RaftHandler, frame
from wanfedtx.rpc.constants import RPCType

pytestmark = pytest.mark.integration

FORGER = "127.0.0.1:1"


class Server(RaftPortServer):
    def __init__(self, reactor: Any, tmp: Path) -> None:
        super().__init__(reactor, tmp)
        self.metrics = Registry()

    def start(self, peers: list[str], budget: int = 32 * 1024 * 1024) -> None:
        self.start_raft(
            peers, bootstrap_expect=len(peers),
            options=RaftOptions(election_timeout=0.5, heartbeat_interval=0.05),
            metrics=self.metrics, partial_frame_budget=budget)

    @property
    def handler(self) -> RaftHandler:
        h = self.reg.for_type(RPCType.RAFT)
        assert isinstance(h, RaftHandler)
        return h

    def violations(self, reason: str) -> float:
        return self.metrics.counter("raft.protocol_violations", "", ("reason",)).value(
            reason=reason)

    async def stop(self) -> None:
        await super().stop()
        await self.port.stopListening()


class Raw(Protocol):
    """A client without credentials: type byte 1, then whatever it likes."""

    def __init__(self) -> None:
        self.closed = False

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self.closed = True


async def raw_connect(reactor: Any, addr: str) -> Raw:
    proto = Raw()
    f = ClientFactory.forProtocol(lambda: proto)
    host, port = addr.rsplit(":", 1)
    reactor.connectTCP(host, int(port), f)
    await wait_for(reactor, lambda: proto.transport is not None)
    proto.transport.write(bytes([RPCType.RAFT]))  # type: ignore[union-attr]
    return proto


@pytest_twisted.ensureDeferred
async def test_forged_append_and_vote_from_non_member_change_nothing(
        reactor: Any, tmp_path: Path) -> None:
    servers = [Server(reactor, tmp_path) for _ in range(3)]
    peers = [s.addr for s in servers]
    try:
        for s in servers:
            s.start(peers)
        await wait_for(reactor, lambda: leader(servers) is not None)
        ld = leader(servers)
        assert ld is not None and ld.svc is not None
        res = await DeferredList([ld.svc.apply(msgpack.packb([f"k{i}", "v"])) for i in range(20)],
                                 fireOnOneErrback=True, consumeErrors=True)
        assert len(res) == 20
        await wait_for(reactor, lambda: all(len(s.fsm.data) == 20 for s in servers))
        fol = next(s for s in servers if s is not ld)
        core = fol.svc.core  # type: ignore[union-attr]
        assert core is not None
        term, last, commit = core.term, core.last_index(), core.commit
        log_before = list(core.log)
        evil_term = term + 1000
        forged = [
            # the attack: higher term, a KV command, a commit index that covers it
            m.AppendEntries(FORGER, evil_term, last, core.last_term(),
                            (m.Entry(last + 1, evil_term, 0, msgpack.packb(["evil", "x"])),),
                            last + 1),
            # rewrite a committed entry
            m.AppendEntries(FORGER, evil_term, commit - 2, core.term_at(commit - 2) or 0,
                            (m.Entry(commit - 1, evil_term, 0, msgpack.packb(["evil", "y"])),),
                            commit),
            m.RequestVote(FORGER, evil_term, last + 100, evil_term, pre_vote=True),
            m.RequestVote(FORGER, evil_term, last + 100, evil_term, transfer=True),
            m.TimeoutNow(FORGER, term),
        ]
        rogue = await raw_connect(reactor, fol.addr)
        rogue.transport.write(b"".join(frame(x) for x in forged))  # type: ignore[union-attr]
        await wait_for(reactor, lambda: fol.violations("not-a-member") >= 2
                       and fol.violations("not-a-voter") >= 2
                       and fol.violations("term-from-non-member") >= 1)
        # and again while the cluster keeps working
        ds = [ld.svc.apply(msgpack.packb([f"after{i}", "v"])) for i in range(5)]
        await DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)
        await wait_for(reactor, lambda: fol.fsm.data.get("after4") == "v")
        core = fol.svc.core  # type: ignore[union-attr]
        assert core is not None
        assert core.term < evil_term
        assert core.log[:len(log_before)] == log_before
        assert all(e.term < evil_term for e in core.log)
        assert "evil" not in fol.fsm.data and "evil" not in ld.fsm.data
        for s in servers:
            c = s.svc.core  # type: ignore[union-attr]
            assert c is not None
            assert c.leader != FORGER and c.vote != FORGER
            assert c.term < evil_term
        assert sum(1 for s in servers if s.svc.core.role == LEADER) == 1  # type: ignore[union-attr]
    finally:
        for s in servers:
            await s.stop()


@pytest_twisted.ensureDeferred
async def test_eight_partial_frames_stay_within_the_budget(reactor: Any, tmp_path: Path) -> None:
    srv = Server(reactor, tmp_path)
    budget = 8 * 1024 * 1024
    try:
        srv.start([srv.addr], budget=budget)
        h = srv.handler
        max_frame = h.max_frame
        assert max_frame < 64 * 1024 * 1024
        # a declared 64 MiB frame is refused at its header: nothing is buffered
        huge = [await raw_connect(reactor, srv.addr) for _ in range(8)]
        for c in huge:
            c.transport.write(struct.pack(">I", 64 * 1024 * 1024) + b"\0" * 65536)  # type: ignore[union-attr]
        await wait_for(reactor, lambda: all(c.closed for c in huge))
        assert h.budget.peak == 0
        # eight connections each send most of a maximal frame: the budget holds two
        conns = [await raw_connect(reactor, srv.addr) for _ in range(8)]
        part = max_frame - 256 * 1024
        for c in conns:
            c.transport.write(struct.pack(">I", max_frame) + b"\0" * part)  # type: ignore[union-attr]

        def settled() -> bool:
            open_ = sum(not c.closed for c in conns)
            return open_ <= 2 and h.budget.used == open_ * (part + 4)

        await wait_for(reactor, settled)
        assert h.budget.peak <= budget
        assert h.budget.used <= budget
        closed = srv.metrics.counter("raft.rpc.closed", "", ("reason",))
        assert closed.value(reason="raft-frame-budget") >= 6
        assert closed.value(reason="raft-frame") >= 8
        for c in conns:
            if c.transport is not None:
                c.transport.loseConnection()
        await wait_for(reactor, lambda: h.budget.used == 0)
    finally:
        await srv.stop()
