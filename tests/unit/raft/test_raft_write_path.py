"""The leader's cheaper write path keeps its bytes and its answers.

* ``RaftStorage`` writes a Ready's entries with one ``write`` per segment: the segment files
  are byte for byte what one ``_append`` per record wrote (same records, same segment rolls),
  so the on-disk format is unchanged and old directories read as before.
* ``encode`` of an ``AppendEntries`` (its own fast path) gives the generic path's bytes, and
  ``decode`` of an ``AppendEntriesResponse`` (its own fast path) the generic path's message or
  error, for valid and damaged messages alike.
* ``RaftService`` applies a committed batch with one metrics update: ``raft.apply`` counts every
  answered write, ``raft.commitTime`` takes one observation per batch; a callback that fails
  every pending write in the middle of a batch does not make a later entry fire twice.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wanfedtx.metrics import Registry
from wanfedtx.raft.core import HardState
from wanfedtx.raft.errors import RaftError
from wanfedtx.raft.messages import (
    ENTRY_COMMAND,
    ENTRY_CONFIG,
    ENTRY_NOOP,
    AppendEntries,
    Entry,
    _wire,
    decode,
    encode,
)
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.storage import RaftStorage


def _entries(rng: random.Random, lo: int, n: int, term: int) -> list[Entry]:
    kinds = (ENTRY_COMMAND, ENTRY_NOOP, ENTRY_CONFIG)
    return [Entry(i, term, rng.choice(kinds), rng.randbytes(rng.randrange(0, 300)))
            for i in range(lo, lo + n)]


class _RecordByRecord(RaftStorage):
    """The storage as before: one ``_append`` (one ``write``) per entry record."""

    def _append_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            self._append(["e", e.index, e.term, e.kind, e.data])
            self._seg_last[self._seg_seq] = e.index


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "raft" / "log").iterdir())}


@pytest.mark.parametrize("seed", range(6))
def test_batched_entry_writes_match_record_by_record(tmp_path: Path, seed: int) -> None:
    segment_size = (500, 2000, 1 << 20)[seed % 3]
    stores = [RaftStorage(tmp_path / "new", segment_size=segment_size),
              _RecordByRecord(tmp_path / "old", segment_size=segment_size)]
    plan: list[tuple[HardState | None, int | None, list[Entry]]] = []
    rng = random.Random(seed)
    nxt, term = 1, 1
    for _ in range(40):
        trunc = None
        if nxt > 5 and rng.random() < 0.15:
            nxt = trunc = rng.randrange(2, nxt)
            term += 1
        batch = _entries(rng, nxt, rng.randrange(0, 12), term)
        nxt += len(batch)
        hs = HardState(term, None) if rng.random() < 0.2 else None
        plan.append((hs, trunc, batch))
    for s in stores:
        s.open()
        for i, (hs, trunc, batch) in enumerate(plan):
            s.persist(hs, None, trunc, batch)
            if i % 3 == 0:
                s.sync()
        s.close()
    new, old = _files(tmp_path / "new"), _files(tmp_path / "old")
    assert new == old
    assert len(new) > (1 if segment_size < 1 << 20 else 0)
    # ... and both read back to the same log (the old format is the format)
    assert RaftStorage(tmp_path / "new").open() == RaftStorage(tmp_path / "old").open()


def test_append_entries_fast_encoding_matches_generic() -> None:
    rng = random.Random(7)
    for n in (0, 1, 5):
        ents = tuple(_entries(rng, 10, n, 3))
        msg = AppendEntries("10.0.0.1:8300", 3, 9, 2, ents, 8, 4)
        generic = msgpack.packb([msg.TYPE] + [_wire(getattr(msg, f)) for f in msg.FIELDS],
                                use_bin_type=True)
        assert encode(msg) == generic
        assert decode(encode(msg)) == msg


class _FSM:
    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, index: int, data: bytes) -> Any:
        self.applied.append(index)
        return data

    def snapshot(self) -> list[bytes]:
        return []

    def restore(self, chunks: Any, last_index: int = 0) -> None:
        pass


class _NoTransport:
    def set_receiver(self, receiver: Any) -> None:
        pass

    def send(self, dst: str, msg: Any) -> None:
        pass

    def stop(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


def _leader(tmp_path: Path, reg: Registry) -> tuple[RaftService, Clock, _FSM]:
    clock = Clock()
    fsm = _FSM()
    svc = RaftService(node_id="n1", data_dir=str(tmp_path), fsm=fsm, transport=_NoTransport(),
                      reactor=clock, bootstrap_expect=1, rng=random.Random(1),
                      threaded_writer=False, metrics=reg)  # type: ignore[arg-type]
    svc.startService()
    for _ in range(100):
        clock.advance(0.05)
        if svc.is_leader():
            break
    assert svc.is_leader()
    return svc, clock, fsm


def test_batch_metrics_and_answers(tmp_path: Path) -> None:
    reg = Registry()
    svc, clock, _ = _leader(tmp_path, reg)
    before = reg.render()
    out: list[Any] = []
    for i in range(5):
        svc.apply(b"cmd%d" % i).addBoth(out.append)
    clock.advance(0)
    clock.advance(0)
    assert [r[1] for r in out] == [b"cmd%d" % i for i in range(5)]
    assert [r[0] for r in out] == sorted(r[0] for r in out)
    text = reg.render()
    assert "consul_raft_apply 5" in text and "consul_raft_apply 5" not in before
    assert "consul_raft_commitTime_count 1\n" in text  # one batch: one observation
    assert f"consul_raft_applied_index {out[-1][0]}" in text
    svc.stopService()


def test_callback_failing_pending_mid_batch_fires_each_once(tmp_path: Path) -> None:
    svc, clock, fsm = _leader(tmp_path, Registry())
    out: list[Any] = []

    def first(r: Any) -> Any:
        out.append(r)
        svc._fail_pending(RaftError("stopped by the first answer"))
        return r

    svc.apply(b"a").addCallback(first)
    for c in (b"b", b"c"):
        svc.apply(c).addBoth(out.append)
    clock.advance(0)
    clock.advance(0)
    assert len(out) == 3
    assert out[0][1] == b"a"
    assert all(getattr(f, "type", None) is RaftError for f in out[1:])
    assert len(fsm.applied) >= 3  # the FSM still applied every committed entry
    svc.stopService()


class ThreadCalls:
    """``callFromThread`` into a queue the test drains on its own thread."""

    def __init__(self) -> None:
        import queue

        self.q: queue.SimpleQueue[tuple[Any, tuple[Any, ...]]] = queue.SimpleQueue()

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.q.put((f, args))

    def run_one(self) -> None:
        f, args = self.q.get(timeout=10)
        f(*args)


def test_writer_thread_order_failure_and_stop() -> None:
    from wanfedtx.raft.writer import WriterThread

    calls = ThreadCalls()
    written: list[int] = []

    def write(batch: int) -> None:
        if batch == 2:
            raise OSError("disk full")
        written.append(batch)

    w: WriterThread[int] = WriterThread(calls, write, "test-writer")  # type: ignore[arg-type]
    w.start()
    out: list[Any] = []
    ds = [w.submit(b) for b in (1, 2, 3)]
    for d in ds:
        d.addBoth(out.append)
    for _ in ds:
        calls.run_one()
    assert written == [1, 3]
    assert out[0] is None and out[2] is None
    assert out[1].check(OSError)
    w.stop()
    assert not w._thread.is_alive()


def _generic_decode(raw: bytes) -> Any:
    """``decode`` without its AppendEntriesResponse fast path."""
    from wanfedtx.raft import messages

    real = messages._fast_append_response
    messages._fast_append_response = lambda obj: None  # type: ignore[assignment]
    try:
        return messages.decode(raw)
    except Exception as e:
        return ("error", type(e), str(e))
    finally:
        messages._fast_append_response = real


def _decode_or_error(raw: bytes) -> Any:
    try:
        return decode(raw)
    except Exception as e:
        return ("error", type(e), str(e))


def test_append_response_fast_decode_matches_generic() -> None:
    rng = random.Random(11)
    values: list[Any] = ["", "n1", 0, 1, -1, 2**64 - 1, True, False, None, 1.5, b"x", []]
    seen_fast = 0
    for _ in range(3000):
        fields = [f"n{rng.randrange(3)}", rng.randrange(9), rng.random() < 0.5,
                  rng.randrange(99), rng.randrange(99), rng.randrange(9)]
        if rng.random() < 0.5:  # one field replaced by any value, valid or not
            fields[rng.randrange(6)] = rng.choice(values)
        for body in ([4, *fields], [4, *fields[:5]], [4.0, *fields], [True, *fields]):
            raw = msgpack.packb(body, use_bin_type=True)
            got, want = _decode_or_error(raw), _generic_decode(raw)
            assert got == want
            seen_fast += not isinstance(got, tuple)
    assert seen_fast > 1000
