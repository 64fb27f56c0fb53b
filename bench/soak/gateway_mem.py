"""Where a mesh gateway's memory goes under connection churn, without network namespaces.

Runs a gateway as ``wanfed gateway -proxy-id mesh-gateway`` does (routes from the agent's
watches, the ``loop`` data path with two workers, the admin API, ``tune_gc`` as the CLI applies
it) in this process, and ``gateway_mem_driver.py`` in a child process: echo backends, a backend
that resets, a refused endpoint, a fake agent whose blocking queries return every
``--hold`` seconds (a third of them with a new index and changed health, so the snapshot is
rebuilt; 5 % HTTP 500 or a dropped connection), and per round ``--per-round`` connections
through the gateway (round trips to local and remote SNIs with FIN or close, closed right
after the hello, reset mid-relay, no hello at all, a partial hello left to time out, unknown
SNI, not TLS, a refused endpoint, a backend that resets) plus 30 long-lived connections
(some replaced every round) and admin scrapes (/stats/prometheus, /stats, /clusters, /ready,
/config_dump).

After each round it records RSS, open descriptors, the bytes ``tracemalloc`` traces and the
collector's per-generation object counts; it compares ``tracemalloc`` snapshots after the
warm-up, after N and after 2N rounds (``--collect``: ``gc.collect()`` before each measurement,
which finds what stays reachable; without it the process runs as in production), and at the end
lists what a full collection finds unreachable, by type.

    # RSS and collector counts as in production (the fault suite polls no admin API)
    PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/soak/gateway_mem.py --rounds 20 \
        --warmup 2 --per-round 1000 --no-tracemalloc --scrapes 0
    # what stays reachable: tracemalloc after N and 2N rounds, gc.collect() before each
    PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/soak/gateway_mem.py --rounds 10 \
        --warmup 2 --per-round 1000 --frames 4 --collect --scrapes 0
    # what each round leaves to the cyclic collector, by type
    PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/soak/gateway_mem.py --rounds 2 \
        --warmup 1 --per-round 1000 --no-tracemalloc --census
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import json
import os
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample(label: str) -> dict[str, Any]:
    counts = [len(gc.get_objects(g)) for g in range(3)]
    gen2 = collections.Counter(type(o).__qualname__ for o in gc.get_objects(2))
    return {
        "label": label,
        "rss_kb": rss_kb(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "traced_kb": tracemalloc.get_traced_memory()[0] // 1024,
        "gc_objects": counts,
        "gc_collections": [s["collections"] for s in gc.get_stats()],
        "gen2_top": gen2.most_common(6),
    }


def top_diff(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot, key: str, n: int) -> list[str]:
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    a, b = a.filter_traces(filters), b.filter_traces(filters)
    out = []
    for st in b.compare_to(a, key)[:n]:
        if key == "traceback":
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in st.traceback[:6])
        else:
            where = str(st.traceback[0])
        out.append(f"{st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} objs  {where}")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20, help="N: snapshots after N and 2N rounds")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--per-round", type=int, default=2000)
    p.add_argument("--collect", action="store_true", help="gc.collect() before each sample")
    p.add_argument("--census", action="store_true",
                   help="after each round, a full collection that lists the garbage by type")
    p.add_argument("--no-tune-gc", action="store_true", help="keep CPython's GC defaults")
    p.add_argument("--data-path", default="loop")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--hold", type=float, default=0.5)
    p.add_argument("--scrapes", type=int, default=4,
                   help="admin API scrapes per round (5 paths each; the fault suite makes none)")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--frames", type=int, default=6, help="tracemalloc traceback depth")
    p.add_argument("--no-tracemalloc", action="store_true",
                   help="RSS and collector counts only (tracemalloc's own memory is in the RSS)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not args.no_tracemalloc:
        tracemalloc.start(args.frames)

    from twisted.internet import protocol, reactor

    from wanfedtx.gateway.conn import RelaySettings
    from wanfedtx.gateway.service import GatewayService
    from wanfedtx.gctune import tune_gc

    gw_port, admin_port, agent_port = free_port(), free_port(), free_port()
    samples: list[dict[str, Any]] = []
    snapdir = Path(tempfile.mkdtemp(prefix="gwmem-"))
    snaps: dict[str, Path] = {}  # on disk, so their objects are not in the process
    total = args.warmup + 2 * args.rounds
    state: dict[str, Any] = {"round": 0, "svc": None, "driver": None, "swaps": 0}

    def measure(label: str) -> dict[str, Any]:
        census: list[tuple[str, int]] | None = None
        if args.census:
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            census = collections.Counter(
                f"class {o.__module__}.{o.__qualname__}" if isinstance(o, type)
                else type(o).__qualname__
                for o in gc.garbage
            ).most_common(16)
            gc.set_debug(0)
            gc.garbage.clear()
        if args.collect or args.census:
            gc.collect()
        s = sample(label)
        s["snapshots"] = state["swaps"]  # route tables swapped in so far
        if census is not None:
            s["garbage"] = census
        samples.append(s)
        print(json.dumps(s), flush=True)
        return s

    def go() -> None:
        state["driver"].transport.write(b"go\n")

    def after_round() -> None:
        state["round"] += 1
        r = state["round"]
        measure(f"round {r}")
        if r in (args.warmup, args.warmup + args.rounds, total) and tracemalloc.is_tracing():
            snaps[str(r)] = snapdir / f"{r}.snap"
            tracemalloc.take_snapshot().dump(str(snaps[str(r)]))
        if r >= total:
            finish()
            return
        go()

    def finish() -> None:
        before = sample("end, before a full collection")
        gc.set_debug(gc.DEBUG_SAVEALL)
        unreachable = gc.collect()
        garbage = collections.Counter(type(o).__qualname__ for o in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        after = sample("end, after gc.collect()")
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        trimmed = sample("end, after malloc_trim(0)")
        report: dict[str, Any] = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "samples": samples,
            "end": [before, after, trimmed],
            "unreachable_objects": unreachable,
            "garbage_by_type": garbage.most_common(25),
        }
        if snaps:
            w, n, nn = (tracemalloc.Snapshot.load(str(snaps[str(k)]))
                        for k in (args.warmup, args.warmup + args.rounds, total))
            report["warmup_to_N_lineno"] = top_diff(w, n, "lineno", args.top)
            report["N_to_2N_lineno"] = top_diff(n, nn, "lineno", args.top)
            report["N_to_2N_traceback"] = top_diff(n, nn, "traceback", args.top)
            del w, n, nn
        print(json.dumps({k: report[k] for k in report if k != "samples"}, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        state["driver"].transport.closeStdin()
        d = state["svc"].stopService()
        d.addBoth(lambda _: reactor.stop())

    class Driver(protocol.ProcessProtocol):
        buf = b""

        def outReceived(self, data: bytes) -> None:
            self.buf += data
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.line(line.decode())

        def errReceived(self, data: bytes) -> None:
            sys.stderr.write(data.decode(errors="replace"))

        def line(self, line: str) -> None:
            if line.startswith("agent "):
                svc.startService()
            elif line.startswith("done"):
                # let the hello timeouts (1 s) and closes of the round finish first
                reactor.callLater(1.5, after_round)

    # built before tune_gc, as the CLI builds its service (its modules are frozen with it)
    settings = RelaySettings(data_path=args.data_path, workers=args.workers, hello_timeout=1.0)
    svc = GatewayService.from_agent(
        reactor,  # type: ignore[arg-type]  # the installed reactor provides ReactorLike
        ("127.0.0.1", gw_port), f"http://127.0.0.1:{agent_port}", "mesh-gateway",
        admin=("127.0.0.1", admin_port), settings=settings)
    svc.on_listening = lambda: reactor.callLater(0.5, go)
    state["svc"] = svc
    set_snapshot = svc.set_snapshot

    def counted(snapshot: Any) -> None:
        state["swaps"] += 1
        set_snapshot(snapshot)

    svc.set_snapshot = counted  # type: ignore[method-assign]

    driver = Driver()
    state["driver"] = driver
    cmd = [sys.executable, str(HERE / "gateway_mem_driver.py"), "--gateway", str(gw_port),
           "--admin", str(admin_port), "--agent", str(agent_port),
           "--per-round", str(args.per_round), "--hold", str(args.hold),
           "--scrapes", str(args.scrapes)]
    reactor.spawnProcess(driver, sys.executable, cmd, env=dict(os.environ))
    if not args.no_tune_gc:
        tune_gc()  # as the gateway CLI does before running the reactor
    t0 = time.process_time()
    reactor.run()
    print(f"cpu {time.process_time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
