"""Our memberlist core (Twisted UDP/TCP transport) in clusters with Go memberlist 0.2.2 peers."""

from __future__ import annotations

import base64
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from gossip_gopeers import GoPeer
from twisted.internet import task

from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.memberlist import Delegate, Memberlist, NodeInfo
from wanfedtx.gossip.memberlist.node import suspicion_timeout
from wanfedtx.gossip.security import Keyring
from wanfedtx.gossip.transport import NetTransport
from wanfedtx.gossip.wire import NodeStateType

pytestmark = pytest.mark.interop
KEY = bytes(range(32))


class Recorder(Delegate):
    def __init__(self, meta: bytes) -> None:
        self.meta = meta
        self.events: list[tuple[str, str, NodeStateType]] = []
        self.msgs: list[bytes] = []

    def node_meta(self, limit: int) -> bytes:
        return self.meta

    def notify_join(self, node: NodeInfo) -> None:
        self.events.append(("join", node.name, node.state))

    def notify_leave(self, node: NodeInfo) -> None:
        self.events.append(("leave", node.name, node.state))

    def notify_msg(self, data: bytes) -> None:
        self.msgs.append(data)


async def until(
    cond: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = ""
) -> Any:
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]


def make_node(reactor: Any, name: str, keyring: Keyring | None) -> tuple[Memberlist, Recorder]:
    t = NetTransport(reactor, "127.0.0.1", 0)
    port = t.listen()
    cfg = local_config(name)
    cfg.bind_addr = "127.0.0.1"
    cfg.bind_port = port
    cfg.keyring = keyring
    rec = Recorder(meta=f"meta-{name}".encode())
    ml = Memberlist(cfg, t, reactor, random.Random(), rec)
    ml.start()
    return ml, rec


def alive(ml: Memberlist) -> dict[str, NodeInfo]:
    return {n.name: n for n in ml.members()}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest_twisted.ensureDeferred
async def test_mixed_cluster_join_meta_messages_leave(
    reactor: Any, mlpeer_bin: Path, go_peers: Callable[..., GoPeer], encrypted: bool
) -> None:
    keyring = Keyring([KEY]) if encrypted else None
    keyargs = ["-key", base64.b64encode(KEY).decode()] if encrypted else []
    a = go_peers(mlpeer_bin, "-name", "a", "-port", "0", "-meta", "meta-a", *keyargs)
    pa = (await a.wait_for(lambda e: e["event"] == "ready"))["port"]
    py, rec = make_node(reactor, "py", keyring)
    try:
        # Our node joins the Go cluster.
        assert await py.join([f"a/127.0.0.1:{pa}"]) == 1
        assert alive(py)["a"].meta == b"meta-a"
        ev = await a.wait_for(lambda e: e["event"] == "join" and e["node"] == "py")
        assert ev["meta"] == "meta-py"
        assert ev["port"] == py.config.bind_port

        # A Go node joins *our* node; everyone learns everyone.
        b = go_peers(
            mlpeer_bin,
            "-name",
            "b",
            "-port",
            "0",
            "-meta",
            "meta-b",
            "-join",
            f"py/127.0.0.1:{py.config.bind_port}",
            *keyargs,
        )
        await b.wait_for(lambda e: e["event"] == "joined" and e["contacted"] == 1)
        await until(lambda: "b" in alive(py), 30, what="py sees b")
        assert alive(py)["b"].meta == b"meta-b"
        await a.wait_for(lambda e: e["event"] == "join" and e["node"] == "b", 30)
        await b.wait_for(lambda e: e["event"] == "join" and e["node"] == "a", 30)

        # User messages both ways, UDP and TCP, plus a gossiped user broadcast from Go.
        py.send_best_effort("a", b"py-udp")
        await py.send_reliable("a", b"py-tcp")
        await a.wait_for(lambda e: e["event"] == "user_msg" and e["data"] == "py-udp")
        await a.wait_for(lambda e: e["event"] == "user_msg" and e["data"] == "py-tcp")
        b.send(cmd="send", node="py", data="b-tcp", tcp=True)
        # UDP sends and gossiped broadcasts are best effort in memberlist (a gossip broadcast
        # goes to random nodes a limited number of times), so they are repeated until they
        # arrive: what is tested is that we receive and decode them, not that UDP is lossless.
        wanted = {b"b-tcp", b"b-udp", b"a-gossip"}
        for _ in range(10):
            if b"b-udp" not in rec.msgs:
                b.send(cmd="send", node="py", data="b-udp", tcp=False)
            if b"a-gossip" not in rec.msgs:
                a.send(cmd="gossip", data="a-gossip")
            try:
                await until(lambda: wanted <= set(rec.msgs), 2, what="msgs")
                break
            except AssertionError:
                continue
        assert wanted <= set(rec.msgs), f"missing {wanted - set(rec.msgs)}; got {rec.msgs}"

        # Probing keeps everyone alive for a few probe rounds (no false suspicion either way).
        await task.deferLater(reactor, 2.5, lambda: None)  # type: ignore[arg-type]
        assert set(alive(py)) == {"py", "a", "b"}
        a.send(cmd="members")
        ev = await a.wait_for(lambda e: e["event"] == "members")
        assert {m["node"] for m in ev["members"]} == {"a", "b", "py"}
        assert not a.find(lambda e: e["event"] == "leave")

        # Graceful leave of our node is seen by both Go nodes.
        await py.leave(3.0)
        await a.wait_for(lambda e: e["event"] == "leave" and e["node"] == "py", 30)
        await b.wait_for(lambda e: e["event"] == "leave" and e["node"] == "py", 30)
    finally:
        await py.shutdown()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest_twisted.ensureDeferred
async def test_failure_detection_both_ways(
    reactor: Any, mlpeer_bin: Path, go_peers: Callable[..., GoPeer], encrypted: bool
) -> None:
    keyring = Keyring([KEY]) if encrypted else None
    keyargs = ["-key", base64.b64encode(KEY).decode()] if encrypted else []
    a = go_peers(mlpeer_bin, "-name", "a", "-port", "0", *keyargs)
    pa = (await a.wait_for(lambda e: e["event"] == "ready"))["port"]
    b = go_peers(mlpeer_bin, "-name", "b", "-port", "0", "-join", f"127.0.0.1:{pa}", *keyargs)
    await b.wait_for(lambda e: e["event"] == "joined")
    py, rec = make_node(reactor, "py", keyring)
    py2, rec2 = make_node(reactor, "py2", keyring)
    try:
        assert await py.join([f"a/127.0.0.1:{pa}"]) == 1
        assert await py2.join([f"py/127.0.0.1:{py.config.bind_port}"]) == 1
        await until(lambda: set(alive(py)) == {"a", "b", "py", "py2"}, 30, what="full view")
        # Go nodes learn py2 by gossip or, at worst, by the next push/pull (15 s + stagger).
        await a.wait_for(lambda e: e["event"] == "join" and e["node"] == "py2", 40)
        await b.wait_for(lambda e: e["event"] == "join" and e["node"] == "py2", 40)

        # SIGKILL a Go node: our nodes mark it dead (failed, not left). With the local
        # profile's retransmit limit of 2, every suspect and dead message about b may go only
        # to the other peers and to b itself, so py's own suspicion timer can be what decides:
        # the bound is memberlist's longest suspicion (no confirmation) after py suspects b.
        b.signal(signal.SIGKILL)
        suspected_at: list[float] = []

        def b_state_seen() -> bool:
            state = {n.name: n.state for n in py.all_nodes()}.get("b")
            if state == NodeStateType.SUSPECT and not suspected_at:
                suspected_at.append(time.monotonic())
            return ("leave", "b", NodeStateType.DEAD) in rec.events

        longest = py.config.suspicion_max_timeout_mult * suspicion_timeout(
            py.config.suspicion_mult, py.estimate_num_nodes(), py.config.probe_interval
        )
        await until(b_state_seen, longest + 20, "b dead")
        dead_at = time.monotonic()
        assert ("leave", "b", NodeStateType.LEFT) not in rec.events
        if suspected_at:
            assert dead_at - suspected_at[0] <= longest + 3
        await until(
            lambda: ("leave", "b", NodeStateType.DEAD) in rec2.events,
            longest + 20,  # py2 may decide on its own suspicion too
            lambda: f"py2 sees b dead: {rec2.events} {py2.all_nodes()} {py.all_nodes()}",
        )

        # Our node py2 dies without a leave message (sockets closed): Go detects it.
        await py2.shutdown()
        await a.wait_for(lambda e: e["event"] == "leave" and e["node"] == "py2", longest + 20)
        await until(
            lambda: ("leave", "py2", NodeStateType.DEAD) in rec.events,
            # Go's dead broadcast may go only to dead peers (retransmit limit 2 in the local
            # profile); then py's own suspicion (up to ``longest`` unconfirmed) decides.
            longest + 20,
            lambda: f"py sees py2 dead: {rec.events} {py.all_nodes()} {a.events}",
        )
        assert "a" in alive(py)
    finally:
        await py.shutdown()
        await py2.shutdown()
