"""Blocking queries at the state-store level, without HTTP: memory and wake-up of N watchers.

N ``run_blocking_query`` coroutines (as the RPC endpoint runs them) wait on one KV key, their
timers on the real reactor (not run; ``task.Clock`` cancels timers in O(n), which would measure
the test clock); one write wakes them all. Memory per watcher is measured with ``tracemalloc``
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
from wanfedtx.state.blocking import run_blocking_query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=10000)
    args = parser.parse_args()
    store = StateStore()
    clock: Any = reactor
    rng = random.Random(1)
    store.kvs_set(1, {"Key": "watched", "Value": b"0"})
    got: list[Any] = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(args.watchers):
        d = Deferred.fromCoroutine(
            run_blocking_query(clock, rng, 1, 300.0, lambda ws: store.kvs_get(ws, "watched"))
        )
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
        f"{args.watchers} store-level watchers: {per / 1024:.2f} KiB per watcher (tracemalloc); "
        f"one write woke all in {elapsed * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
