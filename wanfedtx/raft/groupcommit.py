# -*- test-case-name: tests.unit.raft.test_raft_group_commit -*-
"""Group commit for the raft service: what Readies ask to persist, written and synced one batch
at a time, and the messages that may leave only once it is durable.

The service queues Readies and snapshots (``add``) and the messages that wait for a Ready to be
durable (``send_when_durable``: a follower's answer to AppendEntries, a vote). ``flush`` writes
everything queued as one batch with one ``fdatasync`` at its end; what is queued while a batch
is being written shares the next one.

Where a batch is written: on the writer thread, so that the reactor goes on serving while the
disk syncs; or, when the batch is small (at most ``inline_entries`` entries, no snapshot) and the
previous batch took less than ``inline_seconds``, on the reactor thread, which saves the two
thread hand-offs (to the writer and back) that otherwise sit on the path of every write. A
lightly loaded server makes small batches, and its reactor has nothing else to do while the
disk syncs; a busy one makes larger batches, which go to the thread. A slow or failing disk
sends every batch to the thread after the first slow one.

Either way, nothing that waits on a batch is released (held messages sent, the core told that
its Readies are durable) before the storage's ``sync`` returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from wanfedtx.raft.core import Ready, Snapshot
from wanfedtx.raft.messages import Message
from wanfedtx.raft.metrics import RaftMetrics
from wanfedtx.raft.storage import RaftStorage
from wanfedtx.raft.writer import WriterThread

Item = Ready | Snapshot
Send = Callable[[str, Message], None]


class GroupCommit:
    """The raft service's persistence: one batch in flight at a time, in order."""

    def __init__(self, storage: RaftStorage, send: Send, metrics: RaftMetrics, *,
                 on_durable: Callable[[int], None], on_failed: Callable[[Failure], None],
                 inline_entries: int = 8, inline_seconds: float = 0.002) -> None:
        self.storage = storage
        self._send = send
        self._m = metrics
        self._on_durable = on_durable
        self._on_failed = on_failed
        self.inline_entries = inline_entries
        self.inline_seconds = inline_seconds
        self._writer: WriterThread[list[Item]] | None = None
        self._queue: list[Item] = []
        self._held: list[tuple[int, list[tuple[str, Message]]]] = []
        self.writing: Deferred[None] | None = None  # the batch in flight
        self.durable_seq = 0  # the last Ready known durable
        self.failed = False
        self.last_write_seconds = float("inf")  # the first batch goes to the thread
        # measurements
        self.batches = 0
        self.inline_batches = 0
        self.readies_written = 0

    def start(self, reactor: IReactorFromThreads | None, name: str) -> None:
        """With a reactor, batches that are not written inline go to a writer thread named
        ``name``; without one, every batch is written inline (tests, tools)."""
        if reactor is not None:
            self._writer = WriterThread(reactor, self._write, name)
            self._writer.start()

    def stop(self) -> None:
        """End the writer thread (call once ``writing`` is None: nothing is in flight)."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None

    def add(self, item: Item) -> None:
        self._queue.append(item)

    def send_when_durable(self, wait_seq: int, messages: list[tuple[str, Message]]) -> None:
        if wait_seq <= self.durable_seq:
            for dst, msg in messages:
                self._send(dst, msg)
        else:
            self._held.append((wait_seq, messages))

    def flush(self) -> None:
        """Start writing what is queued, unless a batch is in flight (it is picked up when
        that one is done) or the storage failed."""
        if self.writing is not None or not self._queue or self.failed:
            return
        batch, self._queue = self._queue, []
        seqs = [r.seq for r in batch if isinstance(r, Ready)]
        self.readies_written += len(seqs)
        self.batches += 1
        self._m.batches.inc()
        self._m.readies.inc(len(seqs))
        if self._writer is not None and not self._small(batch):
            d: Deferred[None] = self._writer.submit(batch)
        else:
            self.inline_batches += 1
            try:
                self._write(batch)
                d = succeed(None)
            except Exception:
                d = fail(Failure())
        self.writing = d
        last = seqs[-1] if seqs else None
        d.addCallbacks(self._done, self._failed, callbackArgs=(last,))

    def _small(self, batch: list[Item]) -> bool:
        if self.last_write_seconds >= self.inline_seconds:
            return False
        entries = 0
        for item in batch:
            if isinstance(item, Snapshot) or item.snapshot is not None:
                return False
            entries += len(item.entries)
        return entries <= self.inline_entries

    def _write(self, batch: list[Item]) -> None:
        """Runs on the writer thread, or inline: write every item, then one sync."""
        started = time.perf_counter()
        storage = self.storage
        for item in batch:
            if isinstance(item, Snapshot):
                storage.sync()  # entries it covers are on disk before segments go
                storage.save_snapshot(item)
            else:
                storage.persist(item.hard_state, item.snapshot, item.truncate_from, item.entries)
        storage.sync()
        self.last_write_seconds = time.perf_counter() - started

    def _done(self, _: object, last: int | None) -> None:
        self.writing = None
        if last is not None:
            self.durable_seq = last
            still = []
            for wait, msgs in self._held:
                if wait <= last:
                    for dst, msg in msgs:
                        self._send(dst, msg)
                else:
                    still.append((wait, msgs))
            self._held = still
        self._on_durable(self.durable_seq)

    def _failed(self, f: Failure) -> None:
        self.writing = None
        self.failed = True
        self.last_write_seconds = float("inf")
        self._on_failed(f)
