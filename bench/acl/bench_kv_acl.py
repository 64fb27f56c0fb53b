"""KV GET/PUT over HTTP with ACLs on (a token with a few ``key_prefix`` rules) against the same
run with ACLs off: what the ACL check costs a real agent, end to end.

Reuses bench/http/kv_bench.py's harness (imported, not changed): one real ``wanfed agent``
server process per configuration (``server = true``, ``bootstrap_expect = 1``, raft on disk),
raw-socket load clients in their own processes (bench/http/rawclient.py), requests/s, p50/p99
and CPU per row. Two configurations, run one after the other on fresh servers, alternating
``--rounds`` times so that drift on a shared machine hits both alike:

* ``off``: no ``acl`` block;
* ``on``: ``acl { enabled = true, default_policy = "deny", tokens { initial_management } }``;
  the harness writes a policy with five rules (``key_prefix "bench/"`` write, ``key_prefix ""``
  read, ``key_prefix "secret/"`` deny, ``key "bench/locked"`` deny, ``key_prefix "app/"``
  write) and a token linking it.

Every request carries ``?token=<that token's secret>`` in both configurations (ignored with ACLs
off), so both send the same bytes. Each row must answer 200 to every request. The summary line
gives on/off for PUT and GET (the median of the rounds' rates).

Usage: PYTHONPATH=. python bench/acl/bench_kv_acl.py [--requests 20000] [--concurrency 32]
       [--rounds 2] [--quick] [--tmp /var/tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from kv_bench import BenchError, Server, free_ports, http, load_row, wait_until  # noqa: E402  (bench/http/kv_bench.py)

RULES = """
key_prefix "" { policy = "read" }
key_prefix "bench/" { policy = "write" }
key_prefix "app/" { policy = "write" }
key_prefix "secret/" { policy = "deny" }
key "bench/locked" { policy = "deny" }
"""


def start(root: Path, name: str, acl: bool, master: str) -> Server:
    ports = dict(
        zip(("http", "server", "serf_lan", "serf_wan"), free_ports(["127.0.0.1"], 4), strict=True)
    )
    extra = ["bootstrap_expect = 1"]
    if acl:
        extra.append(
            'acl { enabled = true\n default_policy = "deny"\n'
            f' tokens {{ initial_management = "{master}" }} }}'
        )
    server = Server(name, "127.0.0.1", ports, root, extra)
    server.start()
    wait_until(f"{name}: a leader", lambda: server.leader() != "", 90, 0.2)
    return server


def call(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    sep = "&" if "?" in path else "?"
    status, out, _ = http(f"{server.base}{path}{sep}token={token}", method, data)
    if status != 200:
        raise BenchError(f"{method} {path}: {status} {out[:200]!r}")
    return json.loads(out)


def acl_token(server: Server, master: str) -> str:
    # the leader creates the initial management token once it takes office
    def ready() -> bool:
        status, _, _ = http(f"{server.base}/v1/acl/policies?token={master}")
        return status == 200

    wait_until("ACLs initialized", ready, 60, 0.2)
    call(server, "PUT", "/v1/acl/policy", master, {"Name": "bench-kv", "Rules": RULES})
    tok = call(server, "PUT", "/v1/acl/token", master, {"Policies": [{"Name": "bench-kv"}]})
    return str(tok["SecretID"])


def one_round(args: argparse.Namespace, root: Path, n: int, acl: bool) -> dict[str, float]:
    master = str(uuid.uuid4())
    label = "on" if acl else "off"
    server = start(root / f"round{n}-{label}", f"acl-{label}", acl, master)
    try:
        token = acl_token(server, master) if acl else str(uuid.uuid4())
        query = f"?token={token}"
        put = load_row(args, f"ACL {label}: PUT", "PUT", [server], [server], query=query)
        get = load_row(args, f"ACL {label}: GET", "GET", [server], [server], query=query)
        return {
            "put": put["rate"],
            "get": get["rate"],
            "put_p50": put["p50"],
            "get_p50": get["p50"],
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None, help="per row (20000; quick 500)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (alternating)")
    parser.add_argument("--quick", action="store_true", help="500 requests, one round")
    parser.add_argument("--tmp", default="/var/tmp")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 500 if args.quick else 20000
    if args.quick:
        args.rounds = 1
    root = Path(tempfile.mkdtemp(prefix="wanfed-aclbench-", dir=args.tmp))
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    failed = False
    try:
        for n in range(args.rounds):
            order = (False, True) if n % 2 == 0 else (True, False)
            for acl in order:
                results["on" if acl else "off"].append(one_round(args, root, n, acl))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        failed = True
    finally:
        if not args.keep and not failed:
            shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"data dirs and logs kept in {root}", file=sys.stderr)
        return 1
    for op in ("put", "get"):
        off = statistics.median(r[op] for r in results["off"])
        on = statistics.median(r[op] for r in results["on"])
        p50_off = statistics.median(r[f"{op}_p50"] for r in results["off"])
        p50_on = statistics.median(r[f"{op}_p50"] for r in results["on"])
        print(
            f"{op.upper()}: ACLs off {off:.0f} req/s (p50 {p50_off:.2f} ms), "
            f"on {on:.0f} req/s (p50 {p50_on:.2f} ms): on/off {on / off:.3f}",
            flush=True,
        )
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
