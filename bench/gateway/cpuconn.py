"""The gateway's CPU time per connection, A/B between checkouts; valid on a busy machine.

Starts the TLS echo backend and the handshake-shaped peer of ``run.py``, then, for each round and
each checkout given with ``--root`` (interleaved, order rotated per round), a ``wanfed gateway
-data-path loop -workers 1`` from that checkout, and drives it with ``run.py``'s full-TLS and
handshake-shaped clients. What it reports is the gateway process's CPU time (from
``/proc/<pid>/task/*/schedstat``) divided by the connections served: CPU time, not wall-clock
rate, so other jobs on the machine move it far less than they move connections/s. Every figure is
the median over the rounds. Example (compare the tree at ``HEAD~3`` with this checkout)::

    git archive --prefix=base/ HEAD~3 | tar -x -C /tmp
    nice -n 10 .venv/bin/python bench/gateway/cpuconn.py --root /tmp/base --root . --rounds 5

"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load_run() -> Any:
    spec = importlib.util.spec_from_file_location("gw_run", HERE / "run.py")
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", action="append", default=[], help="checkout to measure (repeat)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="window per load")
    ap.add_argument("--tls-clients", type=int, default=4)
    ap.add_argument("--shaped-clients", type=int, default=8)
    ap.add_argument("--loads", default="tls,shaped")
    ap.add_argument("--workers", default="1")
    ap.add_argument(
        "--attach",
        default="",
        help="command run beside each load, {pid} = the gateway, {tag} = round-checkout-load"
        " (e.g. a py-spy or perf record); it is sent SIGINT when the load ends",
    )
    ap.add_argument("--launcher", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    roots = [Path(r).resolve() for r in (a.root or ["."])]
    run = _load_run()
    run.TLS_CONN_PROCS = a.tls_clients
    run.CONN_PROCS = a.shaped_clients
    run.pinned = lambda cpu: []  # no pinning: CPU time is what is measured
    loads = a.loads.split(",")
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="wanfed-gw-cpuconn-"))
    run.make_certs(tmp)
    bport, shport = run.free_port(), run.free_port()
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
    for h in helpers:
        h.stdout.readline()
    results: dict[str, dict[str, list[float]]] = {str(r): {ld: [] for ld in loads} for r in roots}
    rates: dict[str, dict[str, list[float]]] = {str(r): {ld: [] for ld in loads} for r in roots}
    try:
        for rnd in range(a.rounds):
            order = roots[rnd % len(roots) :] + roots[: rnd % len(roots)]
            for root in order:
                run.ROOT = root
                port = run.free_port()
                gw = run.start_wanfed(
                    tmp, port, bport, bport, shport, 0,
                    ["-data-path", "loop", "-workers", a.workers], run.PIPE_SIZE,
                )  # fmt: skip
                if a.launcher:
                    gw.kill()
                    gw.wait()
                    args = list(gw.args)
                    i = args.index("-m")
                    args[i : i + 2] = [a.launcher]
                    env = dict(os.environ, PYTHONPATH=str(root))
                    env["GW_PROF"] = f"{a.launcher}.{rnd}-{roots.index(root)}.prof"
                    gw = subprocess.Popen(args, env=env, cwd=str(tmp))
                try:
                    run.wait_port(port, gw)
                    for ld in loads:
                        role = "conns" if ld == "tls" else "shaped-client"
                        spy = None
                        if a.attach:
                            tag = f"{rnd}-{roots.index(root)}-{ld}"
                            spy = subprocess.Popen(a.attach.format(pid=gw.pid, tag=tag), shell=True)
                        rate, failed, first, cpu = run.conn_rate(port, tmp, a.seconds, role, gw.pid)
                        if spy is not None:
                            spy.send_signal(signal.SIGINT)
                            spy.wait()
                        n = rate * a.seconds
                        us = cpu / n * 1e6 if n else float("nan")
                        results[str(root)][ld].append(us)
                        rates[str(root)][ld].append(rate)
                        print(
                            f"round {rnd} {root} {ld}: {n:.0f} conns, {failed} failed"
                            f"{' (' + first + ')' if first else ''}, gateway CPU {us:.0f} us/conn",
                            flush=True,
                        )
                finally:
                    gw.terminate()
                    gw.wait()
    finally:
        for h in helpers:
            h.kill()
            h.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| checkout | " + " | ".join(f"{ld} CPU us/conn (median; all)" for ld in loads) + " |")
    print("|---|" + "---|" * len(loads))
    for r, per in results.items():
        cells = []
        for ld in loads:
            v = per[ld]
            cells.append(f"{statistics.median(v):.0f} ({', '.join(f'{x:.0f}' for x in v)})")
        print(f"| {r} | " + " | ".join(cells) + " |")
    print()
    print(f"load average before {load_before}, after {os.getloadavg()}; {time.ctime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
