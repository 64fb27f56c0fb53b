"""Blocking queries at the state-store level, without HTTP: memory and wake-up of N watchers.

N blocking queries wait on one KV key, either as N independent ``BlockingQuery`` objects
(``--mode single``) or as members of one ``WaitGroups`` group (``--mode grouped``, what the
RPC endpoints do for identical reads); their deadlines sit in a ``TimerQueue`` on the real
reactor (not run). One write wakes them all. Memory per watcher is measured with ``tracemalloc``
(Python allocations made while the watchers park); wake-up is the wall time of the write call
until every watcher has its answer (they all resume inside that call).

Usage: python bench/http/store_watchers.py [--watchers 10000]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from wanfedtx.state import StateStore
from wanfedtx.state.blocking import BlockingQuery, WaitGroups
from wanfedtx.state.timers import TimerQueue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=10000)
    parser.add_argument("--mode", choices=["single", "grouped"], default="grouped")
    args = parser.parse_args()
    store = StateStore()
    clock = TimerQueue(reactor)  # type: ignore[arg-type]
    rng = random.Random(1)
    groups = WaitGroups(clock, rng)

    def query(ws: Any) -> tuple[int, Any]:
        return store.kvs_get(ws, "watched")

    def answer(index: int, row: Any) -> tuple[int, Any]:
        return index, row

    store.kvs_set(1, {"Key": "watched", "Value": b"0"})
    got: list[Any] = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(args.watchers):
        d: Deferred[Any]
        if args.mode == "single":
            d = BlockingQuery(clock, rng, 1, 300.0, query, answer)
        else:
            d = groups.wait("watched", 1, 300.0, query, answer)
        d.addCallback(got.append)
    gc.collect()
    per = (tracemalloc.get_traced_memory()[0] - before) / args.watchers
    tracemalloc.stop()
    assert not got
    t0 = time.perf_counter()
    store.kvs_set(2, {"Key": "watched", "Value": b"1"})
    elapsed = time.perf_counter() - t0
    assert len(got) == args.watchers and all(g[0] == 2 for g in got)
    print(
        f"{args.watchers} store-level watchers ({args.mode}): {per / 1024:.2f} KiB per watcher "
        "(tracemalloc); "
        f"one write woke all in {elapsed * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
