"""KV over HTTP: PUT/s, GET/s, and 10,000 blocking watchers on one key.

Runs one single-server agent (``CatalogAgent`` with ``LocalConsensus``, in-memory) serving the
/v1 API on 127.0.0.1 in a child process, and drives it from this process with Twisted's HTTP
client:

1. PUT phase: ``--requests`` PUTs of a 64-byte value over ``--concurrency`` keep-alive
   connections; GET phase: the same number of GETs. Reported as requests/second (client-side,
   wall clock; the client shares the machine's 2 cores with the server).
2. Watchers: ``--watchers`` blocking GETs ``/v1/kv/watched?index=N&wait=300s``, one connection
   each. Once the server holds them all (its open-fd count) and its RSS is stable, the RSS growth
   divided by the watcher count is the memory per watcher (connection + request + blocking query).
   Then one PUT to the key; the time until every watcher has its response is the wake-up latency.

The server writes no access log (set WANFED_BENCH_ACCESS_LOG=1 to keep Twisted's per-request log).

Usage: python bench/http/kv_bench.py [--requests 5000] [--concurrency 32] [--watchers 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


def serve() -> None:
    from klein import Klein
    from twisted.internet import reactor
    from twisted.web.server import Site

    from wanfedtx.agent.catalog_services import CatalogAgent
    from wanfedtx.http.routes import install_error_handlers

    agent = CatalogAgent(
        node_name="bench",
        datacenter="dc1",
        advertise_addr="127.0.0.1",
        server_port=8300,
        reactor=reactor,
    )
    agent.startService()
    app = Klein()
    agent.mount(app)
    install_error_handlers(app)
    site = Site(app.resource())
    site.noisy = False
    site.timeOut = None  # blocking queries may sit for minutes
    if os.environ.get("WANFED_BENCH_ACCESS_LOG") != "1":
        site.log = lambda request: None  # type: ignore[method-assign]  # no per-request log line
    port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=4096)  # type: ignore[attr-defined]
    print(port.getHost().port, flush=True)
    reactor.run()  # type: ignore[attr-defined]


@implementer(IBodyProducer)
class Body:
    """An ``IBodyProducer`` that writes its bytes at once (``FileBodyProducer`` trickles them
    through a cooperator, which would make the client the bottleneck)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Any:
        from twisted.internet.defer import succeed

        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def run(args: argparse.Namespace, reactor: Any, port: int, pid: int) -> None:
    from twisted.internet.defer import DeferredList, DeferredSemaphore
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, HTTPConnectionPool, readBody

    base = f"http://127.0.0.1:{port}".encode()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency
    agent = Agent(reactor, pool=pool)
    value = b"v" * 64

    async def phase(method: bytes, n: int) -> float:
        sem = DeferredSemaphore(args.concurrency)

        async def one(i: int) -> None:
            body = Body(value) if method == b"PUT" else None
            r = await agent.request(method, base + f"/v1/kv/bench/{i % 1000}".encode(), None, body)
            await readBody(r)
            assert r.code == 200, r.code

        from twisted.internet.defer import Deferred

        start = time.perf_counter()
        await DeferredList(
            [sem.run(lambda i=i: Deferred.fromCoroutine(one(i))) for i in range(n)],
            fireOnOneErrback=True,
        )
        return n / (time.perf_counter() - start)

    put_rate = await phase(b"PUT", args.requests)
    get_rate = await phase(b"GET", args.requests)
    print(
        f"PUT/s {put_rate:.0f}  GET/s {get_rate:.0f}  "
        f"({args.requests} requests, {args.concurrency} connections)",
        flush=True,
    )
    await pool.closeCachedConnections()

    if not args.watchers:
        return
    put_agent = Agent(reactor)
    r = await put_agent.request(b"PUT", base + b"/v1/kv/watched", None, Body(b"0"))
    await readBody(r)
    r = await put_agent.request(b"GET", base + b"/v1/kv/watched")
    await readBody(r)
    index = int(r.headers.getRawHeaders(b"X-Consul-Index")[0])

    await deferLater(reactor, 1.0, lambda: None)
    base_fds = open_fds(pid)
    base_rss = rss_kib(pid)
    watch_pool = HTTPConnectionPool(reactor, persistent=False)
    watch_agent = Agent(reactor, pool=watch_pool)
    done_at: list[float] = []

    async def watch() -> None:
        r = await watch_agent.request(
            b"GET", base + f"/v1/kv/watched?index={index}&wait=300s".encode()
        )
        await readBody(r)
        assert r.code == 200
        done_at.append(time.perf_counter())

    from twisted.internet.defer import Deferred

    started = time.perf_counter()
    watchers = []
    for i in range(args.watchers):
        watchers.append(Deferred.fromCoroutine(watch()))
        if i % 500 == 499:
            await deferLater(reactor, 0.05, lambda: None)
    # Wait until the server holds every watcher and its memory has settled.
    deadline = time.perf_counter() + 120
    while open_fds(pid) - base_fds < args.watchers:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"server holds only {open_fds(pid) - base_fds} watchers")
        await deferLater(reactor, 0.2, lambda: None)
    last = -1
    while True:
        await deferLater(reactor, 1.0, lambda: None)
        now = rss_kib(pid)
        if now == last:
            break
        last = now
    parked = time.perf_counter() - started
    assert not done_at, "a watcher returned before the write"
    per_watcher = (last - base_rss) * 1024 / args.watchers
    print(
        f"{args.watchers} watchers parked in {parked:.1f}s; server RSS {base_rss} KiB -> "
        f"{last} KiB: {per_watcher / 1024:.2f} KiB per watcher",
        flush=True,
    )
    t0 = time.perf_counter()
    r = await put_agent.request(b"PUT", base + b"/v1/kv/watched", None, Body(b"1"))
    await readBody(r)
    await DeferredList(watchers, fireOnOneErrback=True)
    lat = sorted(t - t0 for t in done_at)
    print(
        f"wake-up after one PUT: first {lat[0] * 1000:.0f} ms, median "
        f"{lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms, "
        f"all {lat[-1] * 1000:.0f} ms",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--watchers", type=int, default=10000)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        from twisted.internet.defer import Deferred
        from twisted.internet.task import react

        def go(r: Any) -> Deferred[None]:
            return Deferred.fromCoroutine(run(args, r, port, child.pid))

        react(go)
    finally:
        child.terminate()
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
