"""CPU per ``PUT /v1/kv/<key>`` (and ``GET``) through the agent's HTTP stack, in one process: the
agent's Site (``APIChannel``, ``APIRequest``, the route families, the KV endpoint, ``KVS.Apply``)
over an in-memory transport, on the in-memory FSM with local consensus (no raft, no sockets, no
fsync). It isolates the request path's Python cost from the shared machine's scheduling noise:
CPU time (``time.process_time``) per request over ``--requests`` requests on ``--connections``
keep-alive connections, one request in flight on each, as wrk sends them.

    python bench/http/kv_request_cpu.py [--requests 20000] [--connections 16] [--value-size 128]
        [--method PUT] [--path fast|old] [--log-level info] [--profile 25] [--default-gc]

``--path old`` turns the KV fast path (``wanfedtx.http.fastkv``) off: every request then goes
through twisted.web's ``Request``, Klein and werkzeug, as before the fast path existed.
``--log-level`` (default ``info``, as the agents of ``kv_bench.py``) is the level of the
agent's log observer: at ``info`` the per-request ``Request finished`` debug line is skipped;
at ``debug`` it is formatted (and dropped), as in an agent at debug level. (Before
``--log-level`` existed, the script ran at ``debug`` without saying so.)

``--profile N`` prints cProfile's top N functions by own time (the figures then include the
profiler's overhead). The agent's GC settings (``wanfedtx.gctune``) apply unless
``--default-gc``. Run time: a few seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "http"))

from http_support import StateApp  # noqa: E402

from wanfedtx import logs  # noqa: E402
from wanfedtx.agent.httpserver import HTTPServerService  # noqa: E402
from wanfedtx.gctune import tune_gc  # noqa: E402
from wanfedtx.http.limits import HTTPLimits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--method", default="PUT", choices=["PUT", "GET"])
    p.add_argument("--path", default="fast", choices=["fast", "old"])
    p.add_argument("--log-level", default="info")
    p.add_argument("--profile", type=int, default=0)
    p.add_argument("--default-gc", action="store_true")
    args = p.parse_args(argv)
    logs.make_observer(args.log_level, out=io.StringIO())  # sets the level; never added
    app = StateApp()
    # Answers come one "raft batch" later, as with real consensus: every connection's request
    # is parked until all connections have sent theirs, then the batch is applied and answered.
    held: list[tuple[Deferred[Any], Deferred[Any]]] = []
    inner_rpc = app.ctx.rpc

    def batched_rpc(method: str, rpc_args: dict[str, Any]) -> Deferred[Any]:
        outer: Deferred[Any] = Deferred()
        held.append((inner_rpc(method, rpc_args), outer))
        return outer

    def release() -> None:
        batch = held[:]
        del held[:]
        for inner, outer in batch:
            inner.chainDeferred(outer)

    app.ctx.rpc = batched_rpc  # type: ignore[method-assign]
    from twisted.internet import reactor  # its timer heap, as the agent's (never run here)

    svc = HTTPServerService(reactor, app.api.resource(), (("127.0.0.1", 0),),  # type: ignore[arg-type]
                            HTTPLimits(max_conns_per_client=0), fast_kv=args.path == "fast")
    from twisted.internet.address import IPv4Address

    conns = []
    for i in range(args.connections):
        proto = svc.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000 + i))
        tr = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + i),
                             hostAddress=IPv4Address("TCP", "127.0.0.1", 8500))
        proto.makeConnection(tr)
        conns.append((proto, tr))
    value = b"v" * args.value_size

    def request(i: int) -> bytes:
        key = f"bench/{i % 1000}".encode()
        if args.method == "PUT":
            return (b"PUT /v1/kv/" + key + b" HTTP/1.1\r\nHost: 127.0.0.1:8500\r\n"
                    b"User-Agent: wrk\r\nContent-Length: " + str(len(value)).encode()
                    + b"\r\n\r\n" + value)
        return b"GET /v1/kv/" + key + b" HTTP/1.1\r\nHost: 127.0.0.1:8500\r\n\r\n"

    # warm-up (and every key exists for GET)
    for i in range(1000):
        proto, tr = conns[i % len(conns)]
        proto.dataReceived(request(i) if args.method == "PUT" else request(i).replace(
            b"GET ", b"PUT ", 1).replace(b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\nx"))
        release()
        tr.clear()
    if args.default_gc:
        gc.set_threshold(700, 10, 10)
    else:
        tune_gc()
    prof = cProfile.Profile() if args.profile else None
    ok = 0
    t0 = time.process_time()
    if prof:
        prof.enable()
    n = len(conns)
    for start in range(0, args.requests, n):
        for i in range(start, min(start + n, args.requests)):
            proto, _ = conns[i % n]
            proto.dataReceived(request(i))
        release()
        for _, tr in conns:
            ok += tr.value().count(b"HTTP/1.1 200")
            tr.clear()
    if prof:
        prof.disable()
    cpu = time.process_time() - t0
    print(f"{args.method} x {args.requests} on {args.connections} connections ({args.path} path), "
          f"{args.value_size}-byte values: {1e6 * cpu / args.requests:.1f} µs CPU per request "
          f"({args.requests / cpu:.0f}/s on one core); {ok} answered 200; "
          f"gc thresholds {gc.get_threshold()}")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    return 0 if ok == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
