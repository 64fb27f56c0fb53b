"""CPU per replicated write of the raft + FSM side alone: three ``RaftService``s in one process
(``MemoryTransport``, ``task.Clock``, synchronous writer, data directories on tmpfs so that fsync
costs next to nothing), the real ``FSM`` + ``StateStore`` applying ``KVS`` set commands encoded as
``KVS.Apply`` encodes them. ``--connections`` closed-loop proposers keep one write in flight each
(the next write is proposed when the previous one is answered), 128-byte values, 1,000 keys.

The figure is ``time.process_time()`` over the run divided by the writes: every server's raft
core, log writes, message encoding/decoding and FSM apply, no HTTP and no sockets. CPU time, so a
busy machine disturbs it less than wall-clock rates; compare trees by alternating runs:

    PYTHONPATH=/path/to/tree python bench/raft/leader_cpu.py [--writes 20000] [--connections 16]
        [--reps 3] [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from wanfedtx.fsm import commands
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.machine import FSM
from wanfedtx.metrics import Registry
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import MemoryNetwork


def run(writes: int, connections: int, root: Path, profile: int) -> float:
    clock = Clock()
    net = MemoryNetwork(clock)
    addrs = [f"10.0.0.{i}:8300" for i in (1, 2, 3)]
    svcs = [RaftService(node_id=a, data_dir=str(root / a), fsm=FSM(), transport=net.transport(a),
                        reactor=clock, peers=addrs, bootstrap_expect=3, rng=random.Random(i),
                        threaded_writer=False, metrics=Registry())  # type: ignore[arg-type]
            for i, a in enumerate(addrs)]
    for s in svcs:
        s.startService()
    for _ in range(400):
        clock.advance(0.01)
        if any(s.is_leader() for s in svcs):
            break
    leader = next(s for s in svcs if s.is_leader())
    value = b"v" * 128
    cmds = [commands.encode(MessageType.KVS, {"Op": "set", "DirEnt": {
        "Key": f"bench/{k}", "Value": value, "Flags": 0, "ModifyIndex": 0, "Session": ""}})
        for k in range(1000)]
    state = {"proposed": 0, "done": 0}

    def propose(_: Any = None) -> None:
        if _ is not None:
            state["done"] += 1
        if state["proposed"] < writes:
            state["proposed"] += 1
            leader.apply(cmds[state["proposed"] % len(cmds)]).addCallback(propose)

    prof = cProfile.Profile() if profile else None
    gc.collect()
    t0 = time.process_time()
    if prof is not None:
        prof.enable()
    for _ in range(connections):
        propose()
    while state["done"] < writes:
        clock.advance(0)  # one reactor turn: every call due now
    if prof is not None:
        prof.disable()
    cpu = time.process_time() - t0
    for s in svcs:
        s.stopService()
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(profile)
    return 1e6 * cpu / writes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--writes", type=int, default=20000)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions")
    p.add_argument("--tmp", default="/dev/shm")
    args = p.parse_args(argv)
    figures = []
    for _ in range(args.reps):
        root = Path(tempfile.mkdtemp(dir=args.tmp, prefix="raft-leader-cpu-"))
        try:
            figures.append(run(args.writes, args.connections, root, args.profile))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    shown = " / ".join(f"{v:.1f}" for v in figures)
    print(f"c={args.connections}: {statistics.median(figures):.1f} µs CPU/write for 3 servers "
          f"(median of {len(figures)}: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
