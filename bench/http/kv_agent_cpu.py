"""Server CPU per KV request of one real ``wanfed agent`` (one server: raft, its log fsynced per
group commit), loaded by ``bench/http/rawclient.py`` over loopback (``kv_bench.py``'s server
config and load rows). The figure is the agent process's CPU time (``/proc/<pid>/stat``) over a
row divided by its requests, so a busy machine disturbs it little; the wall-clock rates the rows
print are not meant to be compared on such a machine.

    python bench/http/kv_agent_cpu.py [--requests 10000] [--connections 16,256] [--reps 1]

The agent runs the ``wanfedtx`` this interpreter imports (``PYTHONPATH``): run it once with the
tree before a change and once with the tree after (``PYTHONPATH=/path/to/tree``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kv_bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--connections", default="16,256")
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--tmp", default="/var/tmp")
    args = p.parse_args(argv)
    figures: dict[str, list[float]] = {}
    for _ in range(args.reps):
        root = Path(tempfile.mkdtemp(dir=args.tmp, prefix="kv-agent-cpu-"))
        servers = kv_bench.start_cluster(1, root)
        try:
            for method in ("PUT", "GET"):
                for conc in (int(c) for c in args.connections.split(",")):
                    row_args = argparse.Namespace(
                        concurrency=conc, client_procs=1, keys=1000,
                        value_size=args.value_size, requests=args.requests,
                    )
                    label = f"{method} c={conc}"
                    row = kv_bench.load_row(row_args, label, method, servers, servers)
                    cpu_s = row["server_cpu"][servers[0].name] / 100 * row["requests"] / row["rate"]
                    figures.setdefault(label, []).append(1e6 * cpu_s / row["requests"])
        finally:
            for s in servers:
                s.stop()
            shutil.rmtree(root, ignore_errors=True)
    for label, values in figures.items():
        shown = " / ".join(f"{v:.0f}" for v in values)
        print(f"{label}: server CPU {statistics.median(values):.0f} µs/request "
              f"(median of {len(values)}: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
