"""Benchmark the mesh gateway beside haproxy (req.ssl_sni) and nginx (ssl_preread), one run.

    python bench/gateway/run.py [--seconds 2] [--rounds 3] [--json out.json]

Self-contained: run it with the project's virtualenv Python from a checkout; the gateway is
started as ``python -m wanfedtx.cli.main gateway`` with this checkout on ``PYTHONPATH``. Needs
``haproxy``, ``nginx`` with the stream module (Debian: ``libnginx-mod-stream``), ``taskset``
and, when run as root, ``setpriv``.

CPU budget: the proxy under test is pinned with ``taskset`` to one core (``--proxy-cpu``, default
1) and everything else -- this controller, the load generators, the sink and the TLS backend --
to another (``--load-cpu``, default 0). haproxy runs with ``nbthread 1``, nginx with
``worker_processes 1``, ``wanfed gateway`` with ``-data-path loop -workers 1`` (``wanfed-loop``,
the compiled relay where it was built; ``wanfed-loop-python`` adds ``-loop-relay python``)
and with no data-path flags at all (``wanfed-default``: the loop path with one worker per CPU the
machine has, i.e. 2 loops sharing the one pinned core). Every target gets the same load
generators, sink and backend, and every proxy runs as the same user (``--user``, default
``nobody`` when started as root, else the invoking user).

haproxy rows: ``haproxy`` (its default: copies through its buffers), ``haproxy-splice-auto``
(``option splice-auto``: haproxy decides per transfer) and ``haproxy-splice`` (``option
splice-request`` and ``option splice-response``: always splice, with ``tune.pipesize`` equal to
the gateway's pipe size, ``--pipe-size``, which the gateway gets as ``-pipe-size``).

Measured per target:

* bulk throughput on 1 and 32 connections, measured at the sink over a fixed window after a
  warm-up. Each connection starts with a real ClientHello from OpenSSL (Python ``ssl`` on a memory
  BIO) carrying the SNI, followed by opaque bytes sent with ``sendfile(2)`` from a page-cached file;
  the sink drains with ``splice(2)`` into /dev/null. A TLS-passthrough relay never looks past the
  hello, so the bytes it relays are the same work whether or not they are ciphertext; encrypting
  them would only spend the load core on AES and make the load generator, not the proxy, the
  bottleneck (the direct row shows what the load side can do without a proxy).
* proxy CPU seconds per GiB over the same windows: utime+stime from /proc/<pid>/stat of the proxy
  process (all its threads) and its direct children (nginx's worker).
* round-trip time of 64-byte messages over full TLS on one connection (Python ``ssl`` client and
  backend; p50/p99; "added" is minus the direct path).
* new full TLS connections/s (TLS 1.3 handshake with certificate verification, one 64-byte
  echo, close) from 8 client processes, and failures among them (a connection that was reset
  or closed without a TLS close is counted, not fatal), plus the proxy's CPU us per such
  connection. The rate is bound by the load core (two handshakes' crypto per connection), so
  the rate shows parity; the CPU per connection is the capacity figure.
* new connections/s, handshake-shaped, from 16 client processes: a real ClientHello, a
  2000-byte server flight, an 80-byte client flight, a 1-byte answer and close, against a peer
  with no crypto: the proxy does exactly its per-connection work (accept, hello, route, connect,
  relay, close) and the load core is no longer the limit. Plus proxy CPU us per such connection.

Proxy CPU is read from /proc/<pid>/task/*/schedstat (nanoseconds on a CPU, every thread of the
proxy and of its direct children, e.g. nginx's worker), not from the 10 ms utime/stime ticks.

Layout: this file measures and reports; ``peers.py`` holds the load side (certificates, backend,
sink, senders and clients, each run as ``run.py --role NAME``) and ``proxies.py`` starts the
proxies alike and reads their CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peers import (
    CONN_PROCS,
    TLS_CONN_PROCS,
    backend_main,
    blast_main,
    client_ctx,
    conns_main,
    make_certs,
    rtt,
    shaped_client_main,
    shaped_main,
    sink_main,
)
from proxies import (
    HAPROXY_SPLICE,
    PIPE_SIZE,
    RUN_AS,
    WANFED,
    as_user,
    cpu_seconds,
    free_port,
    start_haproxy,
    start_nginx,
    start_wanfed,
    wait_port,
)

# ------------------------------------------------------------------------------------------


class Sink:
    """The sink process and its byte counter."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "sink", "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"c\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def settle(self) -> None:
        """Wait until nothing more arrives (the previous test's bytes are drained)."""
        last = self.count()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.05)  # harness polling, not a test
            now = self.count()
            if now == last:
                return
            last = now

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def bulk(
    port: int,
    conns: int,
    seconds: float,
    warmup: float,
    sink: Sink,
    certdir: Path,
    pid: int | None,
) -> tuple[float, float, int]:
    """(bytes/s at the sink, proxy CPU seconds, bytes) over a window after warm-up."""
    sink.settle()
    blaster = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "blast",
            "--port",
            str(port),
            "--conns",
            str(conns),
            "--certdir",
            str(certdir),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert blaster.stdout is not None
        if blaster.stdout.readline().strip() != b"ready":
            raise RuntimeError("bulk sender failed to connect")
        time.sleep(warmup)  # harness: let the transfer reach steady state
        c0, cpu0, t0 = sink.count(), cpu_seconds(pid) if pid else 0.0, time.monotonic()
        time.sleep(seconds)
        c1, cpu1, t1 = sink.count(), cpu_seconds(pid) if pid else 0.0, time.monotonic()
        if blaster.poll() is not None:
            raise RuntimeError(f"bulk sender exited with {blaster.returncode}")
    finally:
        blaster.terminate()
        blaster.wait()
    return (c1 - c0) / (t1 - t0), cpu1 - cpu0, c1 - c0


def conn_rate(
    port: int, certdir: Path, seconds: float, role: str, pid: int | None
) -> tuple[float, int, str, float]:
    """(connections/s, failures, first failure, proxy CPU seconds over the window).

    The clients start together once every one of them is ready (imports and ClientHello done),
    so a slow start on a busy machine does not eat into the window.
    """
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                role,
                "--port",
                str(port),
                "--certdir",
                str(certdir),
                "--seconds",
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(CONN_PROCS if role == "shaped-client" else TLS_CONN_PROCS)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{role} client failed to start")
    start_at = time.monotonic() + 0.2
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start_at!r}\n".encode())
        p.stdin.flush()
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    ok = failed = 0
    first = ""
    for p in procs:
        out, _ = p.communicate()
        r = json.loads(out)
        ok += r["ok"]
        failed += r["failed"]
        first = first or r["first_error"]
    cpu1 = cpu_seconds(pid) if pid else 0.0
    return ok / seconds, failed, first, cpu1 - cpu0


def measure(
    port: int,
    pid: int | None,
    sink: Sink,
    shaped: int,
    certdir: Path,
    ctx: ssl.SSLContext,
    a: argparse.Namespace,
) -> dict[str, Any]:
    target = sink.port if pid is None else port
    t1, cpu_a, b1 = bulk(target, 1, a.seconds, a.warmup, sink, certdir, pid)
    t32, cpu_b, b32 = bulk(target, 32, a.seconds, a.warmup, sink, certdir, pid)
    r = rtt(("127.0.0.1", port), ctx, a.rtt)
    rate, failed, first, tls_cpu = conn_rate(port, certdir, a.seconds, "conns", pid)
    hs_rate, hs_failed, hs_first, hs_cpu = conn_rate(
        shaped if pid is None else port, certdir, a.seconds, "shaped-client", pid
    )
    q = statistics.quantiles(r, n=100)
    return {
        "bulk1_MBps": t1 / 1e6,
        "bulk32_MBps": t32 / 1e6,
        "cpu_s_per_GiB": ((cpu_a + cpu_b) / ((b1 + b32) / 2**30)) if pid else None,
        "rtt_p50_us": statistics.median(r) * 1e6,
        "rtt_p99_us": q[98] * 1e6,
        "tls_conns_per_s": rate,
        "tls_cpu_us_per_conn": (tls_cpu / (rate * a.seconds) * 1e6) if pid and rate else None,
        "conns_per_s": hs_rate,
        "conn_failures": failed + hs_failed,
        "first_failure": first or hs_first,
        "cpu_us_per_conn": (hs_cpu / (hs_rate * a.seconds) * 1e6) if pid and hs_rate else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="window per measurement")
    ap.add_argument("--warmup", type=float, default=0.5, help="bulk warm-up before the window")
    ap.add_argument("--rounds", type=int, default=3, help="medians over this many rounds")
    ap.add_argument("--rtt", type=int, default=2000, help="64-byte round trips per target")
    ap.add_argument("--load-cpu", type=int, default=0, help="core for everything but the proxy")
    ap.add_argument("--proxy-cpu", type=int, default=1, help="core for the proxy under test")
    ap.add_argument(
        "--only",
        default="direct,haproxy,haproxy-splice-auto,haproxy-splice,nginx,wanfed-loop,"
        "wanfed-default",
        help="targets, comma separated; also wanfed-loop-python, wanfed-twisted",
    )
    ap.add_argument(
        "--pipe-size",
        type=int,
        default=PIPE_SIZE,
        help="pipe bytes: the gateway's -pipe-size and haproxy-splice's tune.pipesize",
    )
    ap.add_argument(
        "--user",
        default="nobody",
        help="user every proxy runs as when started as root ('' keeps root for all)",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--conns", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--certdir", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "backend":
        backend_main(a.port, Path(a.certdir))
        return 0
    if a.role == "sink":
        sink_main(a.port)
        return 0
    if a.role == "blast":
        blast_main(a.port, a.conns, Path(a.certdir))
        return 0
    if a.role == "shaped":
        shaped_main(a.port)
        return 0
    if a.role == "shaped-client":
        shaped_client_main(a.port, Path(a.certdir), a.seconds)
        return 0
    if a.role == "conns":
        conns_main(a.port, Path(a.certdir), a.seconds)
        return 0

    # everything started from here (backend, sink, load generators) inherits the load core
    os.sched_setaffinity(0, {a.load_cpu})
    RUN_AS[:] = as_user(a.user)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="wanfed-gw-bench-"))
    os.chmod(tmp, 0o755)
    make_certs(tmp)
    os.chmod(tmp / "blob", 0o644)
    bport, sport = free_port(), free_port()
    backend = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "backend",
            "--port",
            str(bport),
            "--certdir",
            str(tmp),
        ],
        stdout=subprocess.PIPE,
    )
    assert backend.stdout is not None
    backend.stdout.readline()
    wait_port(bport)
    sink = Sink(sport)
    shport = free_port()
    shaped = subprocess.Popen(
        [sys.executable, __file__, "--role", "shaped", "--port", str(shport)],
        stdout=subprocess.PIPE,
    )
    assert shaped.stdout is not None
    shaped.stdout.readline()
    ctx = client_ctx(tmp)
    names = a.only.split(",")
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    t_start = time.monotonic()
    try:
        for r in range(a.rounds):
            # rotate the order each round so no target always runs last on a busy machine
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                rounds[name].append(run_target(name, tmp, bport, sink, shport, ctx, a))
    finally:
        sink.close()
        shaped.kill()
        shaped.wait()
        backend.kill()
        backend.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - t_start
    load_after = os.getloadavg()
    results = {n: median_of(rounds[n]) for n in names}
    report(results)
    print()
    print(
        f"run time {took:.0f} s; load average before {fmt_load(load_before)}, after "
        f"{fmt_load(load_after)}; proxies run as {a.user or 'the invoking user'} "
        f"(uid {os.geteuid()} started the run); pipe size {a.pipe_size}"
    )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "median": results,
                    "rounds": rounds,
                    "seconds": took,
                    "load_before": load_before,
                    "load_after": load_after,
                },
                indent=2,
            )
        )
    return 0


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in runs[0]:
        if k == "conn_failures":
            out[k] = sum(r[k] for r in runs)  # failures over all rounds
            continue
        if k == "first_failure":
            out[k] = next((r[k] for r in runs if r[k]), "")
            continue
        vals = [r[k] for r in runs if r[k] is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


def run_target(
    name: str,
    tmp: Path,
    bport: int,
    sink: Sink,
    shport: int,
    ctx: ssl.SSLContext,
    a: argparse.Namespace,
) -> dict[str, Any]:
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    cpu = a.proxy_cpu
    if name == "direct":
        port = bport
    elif name in HAPROXY_SPLICE:
        proc = start_haproxy(tmp, port, bport, sink.port, shport, cpu, name, a.pipe_size)
    elif name == "nginx":
        proc = start_nginx(tmp, port, bport, sink.port, shport, cpu)
    elif name in WANFED:
        proc = start_wanfed(tmp, port, bport, sink.port, shport, cpu, WANFED[name], a.pipe_size)
    else:
        raise SystemExit(f"unknown target {name}")
    try:
        wait_port(port, proc)
        print(f"== {name}", file=sys.stderr, flush=True)
        res = measure(port, proc.pid if proc else None, sink, shport, tmp, ctx, a)
        print(json.dumps(res), file=sys.stderr, flush=True)
        return res
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM if not name == "nginx" else signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def report(results: dict[str, Any]) -> None:
    direct = results.get("direct")
    print(
        "| target | bulk 1 conn MB/s | bulk 32 conns MB/s | CPU s/GiB | RTT p50 us | RTT p99 us"
        " | added p50 us | added p99 us | new conns/s | proxy CPU us/conn | full-TLS conns/s"
        " | full-TLS proxy CPU us/conn | failed conns |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        add50 = r["rtt_p50_us"] - direct["rtt_p50_us"] if direct else float("nan")
        add99 = r["rtt_p99_us"] - direct["rtt_p99_us"] if direct else float("nan")
        cpu = "-" if r["cpu_s_per_GiB"] is None else f"{r['cpu_s_per_GiB']:.3f}"
        print(
            f"| {name} | {r['bulk1_MBps']:.0f} | {r['bulk32_MBps']:.0f} | {cpu} | "
            f"{r['rtt_p50_us']:.0f} | {r['rtt_p99_us']:.0f} | {add50:.0f} | {add99:.0f} | "
            f"{r['conns_per_s']:.0f} | {_us(r['cpu_us_per_conn'])} | "
            f"{r['tls_conns_per_s']:.0f} | {_us(r.get('tls_cpu_us_per_conn'))} | "
            f"{r['conn_failures']} |"
        )
    for name, r in results.items():
        if r["first_failure"]:
            print(f"{name}: first failed connection: {r['first_failure']}")
    for base in ("haproxy", "haproxy-splice"):
        if base in results and direct:
            ratios(results, base, direct)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def ratios(results: dict[str, Any], base: str, direct: dict[str, Any]) -> None:
    """Each target against ``base``; CPU columns: lower is better."""
    hap = results[base]
    print()
    print(
        f"| vs {base} | throughput 1 | throughput 32 | CPU/GiB | added RTT p50 | new conns/s"
        " | CPU/conn | full-TLS conns/s | full-TLS CPU/conn |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    hadd = hap["rtt_p50_us"] - direct["rtt_p50_us"]
    for name, r in results.items():
        if name in ("direct", base):
            continue
        radd = r["rtt_p50_us"] - direct["rtt_p50_us"]
        print(
            f"| {name} | {_ratio(r['bulk1_MBps'], hap['bulk1_MBps'])} | "
            f"{_ratio(r['bulk32_MBps'], hap['bulk32_MBps'])} | "
            f"{_ratio(r['cpu_s_per_GiB'], hap['cpu_s_per_GiB'])} | "
            f"{_ratio(radd, hadd) if hadd > 0 else '-'} | "
            f"{_ratio(r['conns_per_s'], hap['conns_per_s'])} | "
            f"{_ratio(r['cpu_us_per_conn'], hap['cpu_us_per_conn'])} | "
            f"{_ratio(r['tls_conns_per_s'], hap['tls_conns_per_s'])} | "
            f"{_ratio(r.get('tls_cpu_us_per_conn'), hap.get('tls_cpu_us_per_conn'))} |"
        )


if __name__ == "__main__":
    sys.exit(main())
