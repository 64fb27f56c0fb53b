"""Deterministic gossip simulation: convergence and failure-detection time vs N.

    .venv/bin/python bench/gossip/sim.py --nodes 10 100 --profile lan

Time is a ``HeapClock`` (deterministic like ``task.Clock`` but O(log n) per timer;
``--task-clock`` uses Twisted's). For each N: start N memberlist nodes on the in-memory network
(1 ms one-way latency), join them all through node 0, and measure (simulated seconds) until every
node sees all N alive; then crash one node and measure until every live node has marked it dead,
checking no live node was falsely declared dead. Also prints network bytes/s per member and
wall-clock CPU seconds per simulated second per member.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from twisted.internet import task

from wanfedtx.gossip.config import PROFILES
from wanfedtx.gossip.memberlist import Memberlist
from wanfedtx.gossip.simnet import HeapClock, SimNetwork


def run(
    n: int, profile: str, compression: bool, seed: int, limit: float, heap_clock: bool = True
) -> dict[str, float]:
    clock: Any = HeapClock() if heap_clock else task.Clock()
    net = SimNetwork(clock, latency=0.001, rng=random.Random(seed))
    nodes: list[Memberlist] = []
    for i in range(n):
        cfg = PROFILES[profile](f"node{i}")
        cfg.bind_port = 10000 + i
        cfg.enable_compression = compression
        ml = Memberlist(cfg, net.transport("10.0.0.1", 10000 + i), clock, random.Random(seed + i))
        ml.start()
        nodes.append(ml)
    cpu0 = time.process_time()
    for ml in nodes[1:]:
        ml.join(["node0/10.0.0.1:10000"])
    t0 = clock.seconds()
    step = 0.05
    while clock.seconds() - t0 < limit:
        clock.advance(step)
        if all(ml.num_alive() == n for ml in nodes):
            break
    converge = clock.seconds() - t0
    b0, s0 = net.bytes, clock.seconds()
    victim = nodes[-1]
    net.transports["10.0.0.1:" + str(victim.config.bind_port)].up = False
    t1 = clock.seconds()
    live = nodes[:-1]
    while clock.seconds() - t1 < limit:
        clock.advance(step)
        if all(
            victim.name not in ml.node_map or ml.node_map[victim.name].dead_or_left() for ml in live
        ):
            break
    detect = clock.seconds() - t1
    false_dead = sum(
        1
        for ml in live
        for other in live
        if other.name in ml.node_map and ml.node_map[other.name].dead_or_left()
    )
    sim_elapsed = clock.seconds() - t0
    cpu = time.process_time() - cpu0
    return {
        "n": n,
        "converge_s": round(converge, 2),
        "detect_s": round(detect, 2),
        "false_dead": false_dead,
        "bytes_per_s_per_member": round((net.bytes - b0) / max(clock.seconds() - s0, 1e-9) / n),
        "cpu_s_per_sim_s_per_member": round(cpu / sim_elapsed / n, 6),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    p.add_argument("--profile", default="lan", choices=sorted(PROFILES))
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit", type=float, default=300.0, help="simulated seconds per phase")
    p.add_argument(
        "--task-clock", action="store_true", help="twisted's task.Clock instead of HeapClock"
    )
    a = p.parse_args()
    for n in a.nodes:
        res = run(n, a.profile, not a.no_compression, a.seed, a.limit, not a.task_clock)
        print(res, flush=True)


if __name__ == "__main__":
    main()
