"""Group commit of the raft writer thread: one server (bootstrap_expect=1) on a real disk,
N concurrent proposers for D seconds; reports writes/s, fsyncs/s and entries per fsync.

    .venv/bin/python bench/raft/bench_group_commit.py [--duration 5] [--concurrency 1,16,256]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from typing import Any

from raft_node import KV
from twisted.internet import defer, task

from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import MemoryNetwork


async def run(reactor: Any, conc: int, duration: float, tmp: str | None) -> None:
    d = tempfile.mkdtemp(prefix="bench-gc-", dir=tmp)
    net = MemoryNetwork(reactor)
    svc = RaftService(
        node_id="a:1",
        data_dir=d,
        fsm=KV(),
        transport=net.transport("a:1"),
        reactor=reactor,
        bootstrap_expect=1,
        options=RaftOptions(election_timeout=0.2, heartbeat_interval=0.02),
        rng=random.Random(1),
        snapshot_threshold=10**9,
    )
    svc.startService()
    while not svc.is_leader():
        await task.deferLater(reactor, 0.05, lambda: None)
    stop = time.perf_counter() + duration
    n = 0
    f0, b0 = svc.storage.fsyncs, svc.fsync_batches

    async def worker(k: int) -> None:
        nonlocal n
        while time.perf_counter() < stop:
            await svc.apply(b"\x92\xa1k\xa1v")
            n += 1

    await defer.gatherResults([defer.ensureDeferred(worker(k)) for k in range(conc)])
    fs, batches = svc.storage.fsyncs - f0, svc.fsync_batches - b0
    print(
        f"proposers={conc:4d} writes/s={n / duration:8.0f} fsyncs/s={fs / duration:7.0f} "
        f"entries/fsync={n / max(fs, 1):6.1f} write batches={batches}",
        flush=True,
    )
    await svc.stopService()
    shutil.rmtree(d, ignore_errors=True)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    for c in [int(x) for x in args.concurrency.split(",")]:
        await run(reactor, c, args.duration, args.tmp)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", default="1,16,256")
    ap.add_argument("--tmp", default=None)
    task.react(lambda r: defer.ensureDeferred(main(r, ap.parse_args())))
