"""Our serf layer in clusters with Go serf 0.9.4 peers: tags, events, queries, left vs failed."""

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
from wanfedtx.gossip.security import Keyring
from wanfedtx.gossip.serf import (
    Event,
    MemberEvent,
    MemberStatus,
    Query,
    Serf,
    SerfConfig,
    UserEvent,
)
from wanfedtx.gossip.transport import NetTransport

pytestmark = pytest.mark.interop
KEY = bytes(range(16, 48))
CONSUL_TAGS = "role=consul,dc=dc1,port=8300,vsn=2,build=1.8.0:abc"
# A killed member can be failed by the prober's own suspicion alone (the local profile sends
# each suspect and dead message twice, possibly only to other peers): up to a few probe rounds
# to notice it plus memberlist's longest suspicion (18 s with 3-5 members). A ceiling, not a wait.
FAILURE_DEADLINE = 45


async def until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]


def make_serf(reactor: Any, name: str, keyring: Keyring | None) -> tuple[Serf, list[Event]]:
    t = NetTransport(reactor, "127.0.0.1", 0)
    port = t.listen()
    cfg = local_config()
    cfg.bind_addr = "127.0.0.1"
    cfg.bind_port = port
    cfg.keyring = keyring
    events: list[Event] = []

    def on_event(ev: Event) -> None:
        events.append(ev)
        if isinstance(ev, Query):
            ev.respond(f"resp-from-{name}".encode())

    s = Serf(
        SerfConfig(
            name,
            cfg,
            tags={"role": "consul", "dc": "dc1", "port": "8300", "id": name},
            leave_propagate_delay=0.2,
        ),
        t,
        reactor,
        random.Random(),
        on_event,
    )
    s.start()
    return s, events


def member_event(events: list[Event], kind: str, node: str) -> bool:
    return any(
        isinstance(e, MemberEvent) and e.type == kind and any(m.name == node for m in e.members)
        for e in events
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest_twisted.ensureDeferred
async def test_serf_interop(
    reactor: Any, serfpeer_bin: Path, go_peers: Callable[..., GoPeer], encrypted: bool
) -> None:
    keyring = Keyring([KEY]) if encrypted else None
    keyargs = ["-key", base64.b64encode(KEY).decode()] if encrypted else []
    a = go_peers(
        serfpeer_bin, "-name", "srv1.dc1", "-port", "0", "-tags", CONSUL_TAGS, *keyargs
    )
    pa = (await a.wait_for(lambda e: e["event"] == "ready"))["port"]
    py, evs = make_serf(reactor, "py.dc1", keyring)
    py2, evs2 = make_serf(reactor, "py2.dc1", keyring)
    try:
        # We join the Go cluster; tags visible both ways.
        assert await py.join([f"srv1.dc1/127.0.0.1:{pa}"]) == 1
        assert py.members["srv1.dc1"].tags["build"] == "1.8.0:abc"
        ev = await a.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "py.dc1")
        assert ev["tags"]["id"] == "py.dc1"
        assert ev["vsn"] == [1, 5, 2, 2, 5, 4]

        # A Go node joins us; py2 joins through it.
        b = go_peers(
            serfpeer_bin,
            "-name",
            "srv2.dc1",
            "-port",
            "0",
            "-tags",
            "role=consul,dc=dc1",
            "-join",
            f"py.dc1/127.0.0.1:{py.config.memberlist.bind_port}",
            *keyargs,
        )
        pb = (await b.wait_for(lambda e: e["event"] == "ready"))["port"]
        await b.wait_for(lambda e: e["event"] == "joined" and e["contacted"] == 1)
        assert await py2.join([f"srv2.dc1/127.0.0.1:{pb}"]) == 1
        want = {"srv1.dc1", "srv2.dc1", "py.dc1", "py2.dc1"}
        await until(lambda: set(py.members) == want == set(py2.members), what="full view")
        await a.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "py2.dc1", 30)

        # User events both ways.
        a.send(cmd="event", name="deploy", data="v1")
        await until(
            lambda: any(isinstance(e, UserEvent) and e.name == "deploy" for e in evs2),
            what="py2 gets Go's event",
        )
        py2.user_event("from-py2", b"hello")
        for peer in (a, b):
            # Gossip plus push/pull (15 s in the local profile) must deliver it.
            await peer.wait_for(lambda e: e["event"] == "user" and e["name"] == "from-py2", 30)

        # Queries both ways: Go asks, we ack and respond; we ask, Go responds.
        b.send(cmd="query", name="ping-q", data="hello")
        await b.wait_for(lambda e: e["event"] == "query_done", 15)
        ours = {
            e["from"]: e["payload"]
            for e in b.events
            if e["event"] == "query_response" and e["from"].startswith("py")
        }
        acks = {e["from"] for e in b.events if e["event"] == "query_ack"}
        assert ours, "no response from our nodes to Go's query"
        assert all(v == f"resp-from-{k}" for k, v in ours.items())
        assert set(ours) <= acks
        q = py.query("our-q", b"x")
        await q.finished
        # Gossip delivery is probabilistic (retransmit limit 2 in the local profile): at least
        # one Go node must have acked and answered, each with its own name.
        go_resp = {k: v for k, v in q.responses.items() if k.startswith("srv")}
        assert go_resp
        assert all(v == f"resp-from-{k}".encode() for k, v in go_resp.items())
        assert set(go_resp) <= set(q.acks)

        # Graceful Go leave -> left (not failed) here.
        b.signal(signal.SIGTERM)
        await until(lambda: member_event(evs, "member-leave", "srv2.dc1"), what="b left")
        # (serf may report member-failed first when memberlist's leave overtakes the leave
        # intent; the intent then turns it into left, as in Go serf.)
        assert py.members["srv2.dc1"].status == MemberStatus.LEFT

        # Our graceful leave -> Go reports member-leave with status left.
        await py2.leave()
        ev = await a.wait_for(lambda e: e["event"] == "member-leave" and e["node"] == "py2.dc1", 30)
        assert ev["status"] == "left"
        await py2.shutdown()

        # SIGKILL of a Go node -> failed here; our crash (no leave) -> failed at Go.
        c = go_peers(
            serfpeer_bin,
            "-name",
            "srv3.dc1",
            "-port",
            "0",
            "-join",
            f"127.0.0.1:{pa}",
            *keyargs,
        )
        await until(lambda: "srv3.dc1" in py.members, what="c joined")
        py3, _ = make_serf(reactor, "py3.dc1", keyring)
        try:
            assert await py3.join([f"srv1.dc1/127.0.0.1:{pa}"]) == 1
            await a.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "py3.dc1", 30)
            c.signal(signal.SIGKILL)
            await until(
                lambda: member_event(evs, "member-failed", "srv3.dc1"), FAILURE_DEADLINE, "c failed"
            )
            await py3.shutdown()
            ev = await a.wait_for(
                lambda e: e["event"] == "member-failed" and e["node"] == "py3.dc1",
                FAILURE_DEADLINE,
            )
            assert ev["status"] == "failed"
        finally:
            await py3.shutdown()
    finally:
        await py.shutdown()
        await py2.shutdown()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest_twisted.ensureDeferred
async def test_our_process_sigkill_is_failed_and_sigterm_is_left_at_go(
    serfpeer_bin: Path, go_peers: Callable[..., GoPeer], encrypted: bool
) -> None:
    import sys

    keyargs = ["-key", base64.b64encode(KEY).decode()] if encrypted else []
    pypeer = str(Path(__file__).with_name("gossip_pypeer.py"))
    a = go_peers(serfpeer_bin, "-name", "srv1.dc1", "-port", "0", *keyargs)
    pa = (await a.wait_for(lambda e: e["event"] == "ready"))["port"]
    join = ["-join", f"srv1.dc1/127.0.0.1:{pa}", *keyargs]
    killed = go_peers(Path(sys.executable), pypeer, "-name", "k.dc1", "-tags", "role=consul", *join)
    term = go_peers(Path(sys.executable), pypeer, "-name", "t.dc1", *join)
    for p in (killed, term):
        await p.wait_for(lambda e: e["event"] == "joined" and e["contacted"] == 1, 20)
    ev = await a.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "k.dc1", 30)
    assert ev["tags"] == {"role": "consul"}
    await a.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "t.dc1", 30)
    await killed.wait_for(lambda e: e["event"] == "member-join" and e["node"] == "t.dc1", 30)

    killed.signal(signal.SIGKILL)
    ev = await a.wait_for(
        lambda e: e["event"] == "member-failed" and e["node"] == "k.dc1", FAILURE_DEADLINE
    )
    assert ev["status"] == "failed"

    term.signal(signal.SIGTERM)
    ev = await a.wait_for(lambda e: e["event"] == "member-leave" and e["node"] == "t.dc1", 30)
    assert ev["status"] == "left"
    await term.wait_for(lambda e: e["event"] == "exit", 15)
