# -*- test-case-name: tests.unit.test_gctune -*-
"""Garbage-collector settings for a long-running agent process (applied once it has started).

Profiling the raft leader under replicated ``PUT /v1/kv`` load (docs/benchmarks.md) showed 20-30%
of its CPU in CPython's cyclic garbage collector, most of it in full (generation 2) collections:
every request leaves a few dozen objects in reference cycles (Deferreds, coroutines, the
request and its channel), requests in flight live long enough at high concurrency to be promoted
to the oldest generation, and each full collection also rescans every object built at start-up
(modules, routes, config, the restored state).

:func:`tune_gc` therefore

* moves everything alive after start-up into the permanent generation (``gc.freeze``), so no
  collection scans it again, and
* raises the thresholds to :data:`THRESHOLDS`: a young collection after 20,000 net container
  allocations instead of 700, so request garbage dies young; older generations rarely.

Reference counting still frees acyclic garbage at once. Cyclic garbage waits for a young
collection (at most 20,000 allocations' worth, a few MiB); a cycle that was still alive at one
waits for the next middle collection (about 100 young ones later). So code on a per-connection
path must not leave cycles behind (the gateway's loop path unlinks its pump pair on close).
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 100, 100)
"""``gc.set_threshold`` values: (young allocations, young runs per middle, middle per full)."""


def tune_gc(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Freeze the objects alive now and set the collector's thresholds (call once started)."""
    gc.collect()  # start-up garbage goes now rather than frozen forever
    gc.freeze()
    gc.set_threshold(*thresholds)
