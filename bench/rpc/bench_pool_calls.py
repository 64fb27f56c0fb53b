"""CPU per pooled RPC call with a deadline, as a forwarded ``?dc=`` read makes it.

Runs the real reactor with a ``ConnPool`` whose one pooled connection is a stand-in protocol
that answers every call in the next reactor turn (no sockets, no TLS, no encoding): what is
measured is the pool's own work per call (the deadline, the Deferreds) plus the reactor's turn,
16 calls per turn. ``--timers N`` first schedules N far-away reactor timers, as a server holding
N blocking queries has (each waits with a timer), since a timer per call costs more in a larger
heap.

Usage: python bench/rpc/bench_pool_calls.py [--turns 20000] [--timers 0]
Compare two commits by running it with ``PYTHONPATH`` set to a worktree of each.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred

from wanfedtx.rpc.pool import ConnPool, _Conn, pool_key

CALLS_PER_TURN = 16
reactor: Any = _reactor


class AnsweringProtocol:
    """What the pool needs of an ``RPCClientProtocol``; calls wait until ``answer_all``."""

    is_closed = False
    last_answered = 0.0
    in_flight = 0

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []

    def call(self, method: str, args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d

    def answer_all(self) -> None:
        pending, self.pending = self.pending, []
        for d in pending:
            d.callback({"Index": 1})

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20000)
    parser.add_argument("--timers", type=int, default=0)
    args = parser.parse_args()
    pool = ConnPool(dialer=None, clock=reactor)  # type: ignore[arg-type]
    proto = AnsweringProtocol()
    pool._conns[pool_key("s2", "127.0.0.1:8300")] = _Conn("s2", proto, 0.0)  # type: ignore[arg-type]
    turns = {"done": 0, "cpu0": 0.0}

    def turn() -> None:
        proto.answer_all()
        if turns["done"] == args.turns:
            cpu = time.process_time() - turns["cpu0"]
            per_call = cpu / (args.turns * CALLS_PER_TURN) * 1e6
            print(f"{per_call:.2f} µs CPU per call ({CALLS_PER_TURN} calls per turn, "
                  f"{args.turns} turns, {args.timers} other timers)")
            reactor.stop()
            return
        turns["done"] += 1
        for _ in range(CALLS_PER_TURN):
            pool.rpc("dc2", "s2", "127.0.0.1:8300", "KVS.Get", {"Key": "k"}, timeout=10.0)
        reactor.callLater(0, turn)

    def start() -> None:
        for i in range(args.timers):
            reactor.callLater(1000 + i * 0.001, lambda: None)
        turns["cpu0"] = time.process_time()
        turn()

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
