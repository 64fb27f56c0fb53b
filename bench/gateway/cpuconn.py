"""The gateway's CPU time per connection, paired A/B between checkouts; valid on a busy machine.

One ``wanfed gateway -data-path loop -workers 1`` per checkout given with ``--root``, all running
at once beside the TLS echo backend and the handshake-shaped peer of ``run.py``. Every client
process sends its connections to the gateways in turn (connection i to gateway i mod n), so all
gateways see the same load at the same moments: whatever else runs on the machine, and the
concurrency (how many events each epoll wake-up finds), is shared. Per gateway it reports the
process's CPU time (``/proc/<pid>/task/*/schedstat``) divided by the connections it served: CPU
time, not a wall-clock rate. Each round is one window per load; the table gives the median
over the rounds and the per-round ratios to the first checkout and to the first ``--peer`` (a
haproxy row of ``run.py``, driven by the same clients). Example (the tree at ``HEAD~3``
against this checkout, beside haproxy with forced splice)::

    git archive --prefix=base/ HEAD~3 | tar -x -C /tmp
    nice -n 10 .venv/bin/python bench/gateway/cpuconn.py --root /tmp/base --root . \
        --peer haproxy-splice --rounds 5

Loads: ``tls`` (TLS 1.3 handshake with certificate verification, one 64-byte echo, close: the
full-TLS row of ``run.py``) and ``shaped`` (a real ClientHello, a 2000-byte server flight, an
80-byte client flight, a 1-byte answer, close, against a crypto-free peer).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run.py's pieces, next to this script
import peers  # noqa: E402
import proxies  # noqa: E402


def client_main(ports: list[int], certdir: Path, seconds: float, load: str) -> None:
    """Sequential connections for ``seconds``, alternating between ``ports``; prints the
    connections served per port as JSON."""
    ctx = peers.client_ctx(certdir)
    hello = peers.client_hello(ctx, peers.SHAPED_SNI)
    fin = b"f" * peers.CLIENT_FLIGHT
    msg = b"e" * peers.ECHO
    ok = [0] * len(ports)
    failed = 0
    first = ""
    buf = bytearray(peers.SERVER_FLIGHT)
    end = peers.wait_start() + seconds
    i = 0
    while time.monotonic() < end:
        k = i % len(ports)
        i += 1
        try:
            if load == "tls":
                s = peers.connect(("127.0.0.1", ports[k]), ctx)
                s.sendall(msg)
                got = b""
                while len(got) < peers.ECHO:
                    b = s.recv(peers.ECHO - len(got))
                    if not b:
                        raise ConnectionError("closed before the echo")
                    got += b
                s.close()
            else:
                with socket.create_connection(("127.0.0.1", ports[k]), timeout=30) as raw:
                    peers.shaped_exchange(raw, hello, fin, buf)
            ok[k] += 1
        except (OSError, ssl.SSLError) as e:
            failed += 1
            first = first or f"{type(e).__name__}: {e}"
    print(json.dumps({"ok": ok, "failed": failed, "first_error": first}), flush=True)


def window(
    ports: list[int], pids: list[int], certdir: Path, seconds: float, load: str, clients: int
) -> tuple[list[int], list[float], int, str]:
    """One window: (connections per gateway, CPU seconds per gateway, failures, first one)."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--role", "client", "--load", load, "--ports",
             ",".join(map(str, ports)), "--certdir", str(certdir), "--seconds", str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(clients)
    ]  # fmt: skip
    for p in procs:
        if p.stdout is None or p.stdout.readline().strip() != b"ready":
            raise RuntimeError("a client failed to start")
    start_at = time.monotonic() + 0.2
    for p in procs:
        if p.stdin is not None:
            p.stdin.write(f"{start_at!r}\n".encode())
            p.stdin.flush()
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu0 = [proxies.cpu_seconds(pid) for pid in pids]
    ok = [0] * len(ports)
    failed = 0
    first = ""
    for p in procs:
        out, _ = p.communicate()
        r = json.loads(out)
        ok = [a + b for a, b in zip(ok, r["ok"], strict=True)]
        failed += r["failed"]
        first = first or r["first_error"]
    cpu = [proxies.cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    return ok, cpu, failed, first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", action="append", default=[], help="checkout to measure (repeat)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="window per load")
    ap.add_argument("--tls-clients", type=int, default=4)
    ap.add_argument("--shaped-clients", type=int, default=8)
    ap.add_argument("--loads", default="tls,shaped")
    ap.add_argument("--workers", default="1")
    ap.add_argument(
        "--peer",
        action="append",
        default=[],
        help="also measure this haproxy row of run.py (haproxy, haproxy-splice, ...)",
    )
    ap.add_argument("--launcher", default="", help=argparse.SUPPRESS)
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--load", default="tls", help=argparse.SUPPRESS)
    ap.add_argument("--ports", default="", help=argparse.SUPPRESS)
    ap.add_argument("--certdir", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "client":
        ports = [int(p) for p in a.ports.split(",")]
        client_main(ports, Path(a.certdir), a.seconds, a.load)
        return 0

    roots = [Path(r).resolve() for r in (a.root or ["."])]
    proxies.pinned = lambda cpu: []  # no pinning: CPU time is what is measured
    loads = a.loads.split(",")
    load_before = os.getloadavg()
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="wanfed-gw-cpuconn-"))
    peers.make_certs(tmp)
    bport, shport = proxies.free_port(), proxies.free_port()
    helpers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "run.py"), "--role", "backend", "--port", str(bport),
             "--certdir", str(tmp)],
            stdout=subprocess.PIPE,
        ),
        subprocess.Popen(
            [sys.executable, str(HERE / "run.py"), "--role", "shaped", "--port", str(shport)],
            stdout=subprocess.PIPE,
        ),
    ]  # fmt: skip
    gws: list[subprocess.Popen[bytes]] = []
    us: dict[str, list[list[float]]] = {ld: [] for ld in loads}
    try:
        for h in helpers:
            if h.stdout is not None:
                h.stdout.readline()
        ports = [proxies.free_port() for _ in roots]
        names = [str(r) for r in roots]
        for root, port in zip(roots, ports, strict=True):
            proxies.ROOT = root
            gws.append(
                proxies.start_wanfed(
                    tmp, port, bport, bport, shport, 0,
                    ["-data-path", "loop", "-workers", a.workers, "-admin-bind", ""],
                    proxies.PIPE_SIZE,
                )
            )  # fmt: skip
        if a.launcher:  # e.g. a wrapper that profiles the loop thread: the last checkout only
            old = gws.pop()
            old.kill()
            old.wait()
            args = list(old.args)
            i = args.index("-m")
            args[i : i + 2] = [a.launcher]
            env = dict(os.environ, PYTHONPATH=str(roots[-1]))
            gws.append(subprocess.Popen(args, env=env, cwd=str(tmp)))
        for peer in a.peer:  # e.g. haproxy-splice: the same clients, the same moments
            port = proxies.free_port()
            ports.append(port)
            names.append(peer)
            gws.append(
                proxies.start_haproxy(tmp, port, bport, bport, shport, 0, peer, proxies.PIPE_SIZE)
            )
        for port, gw in zip(ports, gws, strict=True):
            proxies.wait_port(port, gw)
        print("pids: " + ", ".join(f"{n}={g.pid}" for n, g in zip(names, gws, strict=True)))
        for rnd in range(a.rounds):
            for ld in loads:
                clients = a.tls_clients if ld == "tls" else a.shaped_clients
                ok, cpu, failed, first = window(
                    ports, [g.pid for g in gws], tmp, a.seconds, ld, clients
                )
                per = [c / n * 1e6 if n else float("nan") for c, n in zip(cpu, ok, strict=True)]
                us[ld].append(per)
                cells = ", ".join(
                    f"{n} conns {u:.0f} us/conn" for n, u in zip(ok, per, strict=True)
                )
                err = f" ({first})" if first else ""
                print(f"round {rnd} {ld}: {cells}; {failed} failed{err}", flush=True)
    finally:
        for p in [*gws, *helpers]:
            p.send_signal(signal.SIGTERM)
        for p in [*gws, *helpers]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| checkout | " + " | ".join(f"{ld} CPU us/conn (median; rounds)" for ld in loads) + " |")
    print("|---|" + "---|" * len(loads))
    for i, r in enumerate(names):
        cells = []
        for ld in loads:
            v = [row[i] for row in us[ld]]
            ratio = statistics.median(row[i] / row[0] for row in us[ld])
            rounds = ", ".join(f"{x:.0f}" for x in v)
            cell = f"{statistics.median(v):.0f} ({rounds}); {ratio:.2f}x the first"
            if a.peer:  # against the first peer, round by round
                k = len(roots)
                cell += f", {statistics.median(row[i] / row[k] for row in us[ld]):.2f}x {a.peer[0]}"
            cells.append(cell)
        print(f"| {r} | " + " | ".join(cells) + " |")
    print()
    print(
        f"{time.monotonic() - t0:.0f} s; load average before {fmt(load_before)}, after "
        f"{fmt(os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )
    return 0


def fmt(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    sys.exit(main())
