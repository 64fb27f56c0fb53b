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

Usage: python bench/federation/bench_cross_dc.py [--requests 5000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from kv_bench import BenchError, load_row  # noqa: E402

from wanfedtx.cli.demo import DCS, Federation  # noqa: E402


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
            ("GET primary, local", "GET", target["primary"], ""),
            ("GET primary ?dc=secondary (2 hops)", "GET", target["primary"], "?dc=secondary"),
            ("PUT secondary ?dc=primary (1 hop)", "PUT", target["secondary"], "?dc=primary"),
        ]
        results = []
        for label, method, targets, query in rows:
            results.append(load_row(args, label, method, targets, everyone, query))
        print("\n| row | req/s | p50 ms | p99 ms | CPU % (servers, gateways) |")
        print("|---|---:|---:|---:|---|")
        for r in results:
            cpu = ", ".join(f"{n} {v:.0f}" for n, v in r["server_cpu"].items())
            print(f"| {r['label']} | {r['rate']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {cpu} |")
    finally:
        fed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
