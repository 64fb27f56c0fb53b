"""Group commit: where a batch is written (inline or on the writer thread) and that nothing
waiting on it is released before its sync returned, either way.

* A small batch after a fast sync is written inline: storage calls and the held answer happen
  inside ``flush``, the answer after the sync.
* The first batch, a batch after a slow sync, a large batch and a snapshot go to the writer
  thread: nothing is sent until the thread's result is delivered on the reactor thread.
* A failed write (inline or threaded) releases nothing and ends writing.
* In a three-server cluster, a follower sends its answer to an AppendEntries before it applies
  the entries that AppendEntries says are committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_raft_service import World, cmd
from test_raft_write_path import ThreadCalls
from twisted.python.failure import Failure

from wanfedtx.metrics import Registry
from wanfedtx.raft.core import Ready, Snapshot
from wanfedtx.raft.groupcommit import GroupCommit
from wanfedtx.raft.messages import (
    ENTRY_COMMAND,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    Message,
)
from wanfedtx.raft.metrics import RaftMetrics


class _Storage:
    """Records persist/sync/save_snapshot into a shared event list; ``fail`` makes sync raise."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.fail = False

    def persist(self, hard_state: Any, snapshot: Any, truncate_from: Any,
                entries: list[Entry]) -> None:
        self.events.append(("persist", [e.index for e in entries]))

    def sync(self) -> None:
        if self.fail:
            raise OSError("disk gone")
        self.events.append(("sync",))

    def save_snapshot(self, snap: Snapshot) -> None:
        self.events.append(("snapshot", snap.index))


def _answer(index: int) -> list[tuple[str, Message]]:
    return [("leader", AppendEntriesResponse("me", 1, True, index, 0))]


def _ready(seq: int, first: int, n: int) -> Ready:
    return Ready(seq=seq, entries=[Entry(i, 1, ENTRY_COMMAND, b"x")
                                   for i in range(first, first + n)])


def _group(events: list[Any], threaded: bool) -> tuple[GroupCommit, _Storage, ThreadCalls,
                                                       list[Failure]]:
    storage = _Storage(events)
    failures: list[Failure] = []
    gc = GroupCommit(storage, lambda dst, msg: events.append(("send", msg.match_index)),  # type: ignore[arg-type,attr-defined]
                     RaftMetrics(Registry()),
                     on_durable=lambda seq: events.append(("durable", seq)),
                     on_failed=failures.append)
    reactor = ThreadCalls()
    gc.start(reactor if threaded else None, "test-raft-writer")  # type: ignore[arg-type]
    return gc, storage, reactor, failures


def _write(gc: GroupCommit, seq: int, first: int, n: int) -> None:
    gc.add(_ready(seq, first, n))
    gc.send_when_durable(seq, _answer(first + n - 1))
    gc.flush()


def test_a_small_batch_after_a_fast_sync_is_written_inline_answer_after_sync() -> None:
    events: list[Any] = []
    gc, _, reactor, _ = _group(events, threaded=True)
    try:
        _write(gc, 1, 1, 1)  # the first batch: no sync timed yet, so the writer thread
        assert events == [] and gc.writing is not None
        reactor.run_one()
        assert events == [("persist", [1]), ("sync",), ("send", 1), ("durable", 1)]
        assert gc.last_write_seconds < gc.inline_seconds  # a fake disk is fast
        events.clear()
        _write(gc, 2, 2, gc.inline_entries)
        # written inside flush(): the answer after the sync, nothing left in flight
        assert events == [("persist", list(range(2, 2 + gc.inline_entries))), ("sync",),
                          ("send", 1 + gc.inline_entries), ("durable", 2)]
        assert gc.writing is None and gc.inline_batches == 1 and reactor.q.empty()
    finally:
        gc.stop()


@pytest.mark.parametrize("case", ["slow-sync", "large-batch", "snapshot"])
def test_what_goes_to_the_writer_thread_sends_nothing_before_its_sync(case: str) -> None:
    events: list[Any] = []
    gc, _, reactor, _ = _group(events, threaded=True)
    try:
        gc.last_write_seconds = 0.0005  # fast so far: only the case below sends it to the thread
        n = 1
        if case == "slow-sync":
            gc.last_write_seconds = gc.inline_seconds
        elif case == "large-batch":
            n = gc.inline_entries + 1
        else:
            gc.add(Snapshot(0, 1, frozenset({"me"}), b"state"))
        _write(gc, 1, 1, n)
        assert gc.writing is not None and gc.inline_batches == 0
        assert not any(e[0] == "send" for e in events)  # the thread may have written; not sent
        reactor.run_one()  # the thread's result, delivered on "the reactor thread"
        assert events[-2:] == [("send", n), ("durable", 1)]
        assert events.index(("send", n)) > max(i for i, e in enumerate(events) if e[0] == "sync")
    finally:
        gc.stop()


@pytest.mark.parametrize("threaded", [False, True])
def test_a_failed_write_releases_nothing_and_ends_writing(threaded: bool) -> None:
    events: list[Any] = []
    gc, storage, reactor, failures = _group(events, threaded=threaded)
    try:
        storage.fail = True
        _write(gc, 1, 1, 1)
        if threaded:
            reactor.run_one()
        assert [f.type for f in failures] == [OSError]
        assert events == [("persist", [1])]  # no sync, no answer, not durable
        assert gc.failed and gc.writing is None
        _write(gc, 2, 2, 1)
        assert events == [("persist", [1])]  # nothing more is written
    finally:
        gc.stop()


def test_a_follower_answers_before_it_applies_what_is_committed(tmp_path: Path) -> None:
    w = World(tmp_path)
    leader = w.leader()
    w.settle(leader.apply(cmd("a", "1")))
    follower_addr = next(a for a, s in w.svcs.items() if s is not leader)
    follower = w.svcs[follower_addr]
    events: list[tuple[str, int]] = []
    fsm = w.fsms[follower_addr]
    fsm_apply = fsm.apply

    def apply(index: int, data: bytes) -> Any:
        events.append(("apply", index))
        return fsm_apply(index, data)

    fsm.apply = apply
    send = follower.transport.send

    def traced_send(peer: str, msg: Message) -> None:
        if isinstance(msg, AppendEntriesResponse) and msg.success:
            events.append(("answer", msg.match_index))
        send(peer, msg)

    follower._log._send = traced_send  # what the group commit sends once durable
    receive = follower._receive
    turns: list[tuple[int, int]] = []

    def traced_receive(msg: Message) -> None:
        if isinstance(msg, AppendEntries) and msg.entries:
            turns.append((msg.entries[-1].index, msg.leader_commit))
        receive(msg)

    w.net.transports[follower_addr].receiver = traced_receive
    for i in range(5):
        w.settle(leader.apply(cmd("k", str(i))))
    # an AppendEntries that brought new entries and committed older ones: answered first
    mixed = [(last, commit) for last, commit in turns
             if commit < last and ("apply", commit) in events]
    assert len(mixed) >= 3, (turns, events)
    for last, commit in mixed:
        assert events.index(("answer", last)) < events.index(("apply", commit)), events
    for s in list(w.svcs):
        w.stop(s)
