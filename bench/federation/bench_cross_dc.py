"""Cross-datacenter KV over HTTP through mesh gateways, beside the same requests served locally.

Runs ``wanfed demo``'s federation (``wanfedtx.cli.demo.Federation``: two ``-dev`` TLS servers,
two gateways fed by their agents, on 127.0.1.1 / 127.0.2.1), waits for the case-wanfed-gw
checks, then drives the primary's HTTP API with the raw-socket load clients of
``bench/http/rawclient.py`` (own processes, keep-alive, one request in flight per connection):

* ``PUT /v1/kv/...`` and ``GET`` served by the primary itself (baseline);
* ``PUT/GET /v1/kv/...?dc=secondary`` sent to the primary: the primary's server dials its local
  gateway with SNI ``sec.server.secondary.consul`` (ALPN ``consul/rpc-multi``, pooled
  connection), which relays to the secondary's gateway, which relays to the secondary's server:
  two gateway hops each way;
* ``PUT ?dc=primary`` sent to the secondary: one hop (a secondary dials the primary's gateway
  directly).

Each row reports req/s, p50/p99 and the CPU of every process (both servers, both gateways).
The rows run ``--rounds`` times, interleaved (this machine's speed drifts by tens of percent
within minutes, so a lone short row says little); the table shows, per row, the round with
the median p50, and the last line the ratio of the forwarded GET's p50 to the local GET's in
each round and its median.

Usage: python bench/federation/bench_cross_dc.py [--requests 5000] [--concurrency 16] [--rounds 3]
       [--only-get]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from kv_bench import BenchError, load_row  # noqa: E402

from wanfedtx.cli.demo import DCS, Federation  # noqa: E402

LOCAL_GET = "GET primary, local"
FORWARDED_GET = "GET primary ?dc=secondary (2 hops)"


def _median_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose p50 is the median of the row's rounds (its req/s, p99 and CPU with it)."""
    ordered = sorted(results, key=lambda r: r["p50"])
    return ordered[(len(ordered) - 1) // 2]


class Proc:
    """What ``load_row`` needs of a process: a name, its pid, and for targets its HTTP port."""

    def __init__(self, name: str, pid: int, ip: str = "", http_port: int = 0) -> None:
        self.name = name
        self.pid = pid
        self.ip = ip
        self.http_port = http_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every row runs, rows interleaved (default 3)")
    parser.add_argument("--only-get", action="store_true",
                        help="only the local and the forwarded GET rows")
    args = parser.parse_args()
    ips = {"primary": "127.0.1.1", "secondary": "127.0.2.1"}
    root = Path(tempfile.mkdtemp(prefix="wanfed-bench-xdc-"))
    fed = Federation(root, ips)
    try:
        fed.start(lambda line: print(line, flush=True))
        if not fed.wait(120):
            raise BenchError(f"the federation did not come up; logs in {root}")
        agents = {dc: fed.procs[i] for i, dc in enumerate(DCS)}
        gateways = {dc: fed.procs[2 + i] for i, dc in enumerate(DCS)}
        everyone: list[Any] = [Proc(f"{dc[:3]}-server", agents[dc].pid) for dc in DCS]
        everyone += [Proc(f"{dc[:3]}-gateway", gateways[dc].pid) for dc in DCS]
        target = {dc: [Proc(dc, agents[dc].pid, ips[dc], 8500)] for dc in DCS}
        rows = [
            ("PUT primary, local", "PUT", target["primary"], ""),
            ("PUT primary ?dc=secondary (2 hops)", "PUT", target["primary"], "?dc=secondary"),
            (LOCAL_GET, "GET", target["primary"], ""),
            (FORWARDED_GET, "GET", target["primary"], "?dc=secondary"),
            ("PUT secondary ?dc=primary (1 hop)", "PUT", target["secondary"], "?dc=primary"),
        ]
        if args.only_get:  # the keys are written once, unmeasured, for the GETs to read
            for label, method, targets, query in rows[:2]:
                load_row(args, f"{label} (writes the keys)", method, targets, everyone, query)
            rows = [row for row in rows if row[0] in (LOCAL_GET, FORWARDED_GET)]
        by_label: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in rows}
        ratios = []
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}", flush=True)
            round_rows = {}
            for label, method, targets, query in rows:
                r = load_row(args, label, method, targets, everyone, query)
                by_label[label].append(r)
                round_rows[label] = r
            ratios.append(round_rows[FORWARDED_GET]["p50"] / round_rows[LOCAL_GET]["p50"])
        print("\n| row | req/s | p50 ms | p99 ms | CPU % (servers, gateways) |")
        print("|---|---:|---:|---:|---|")
        for label, results in by_label.items():
            r = _median_row(results)
            cpu = ", ".join(f"{n} {v:.0f}" for n, v in r["server_cpu"].items())
            print(f"| {label} | {r['rate']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {cpu} |")
        print("\nGET ?dc=secondary p50 / local GET p50, per round: "
              + ", ".join(f"{x:.2f}x" for x in ratios)
              + f"; median {statistics.median(ratios):.2f}x")
    finally:
        fed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
