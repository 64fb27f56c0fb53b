"""Run the fault suite (tests/faults) outside pytest and print its figures for
docs/reliability.md; needs root, iproute2 and nftables.

    sudo PYTHONPATH=$PWD .venv/bin/python bench/soak/faults_soak.py --profile long
    sudo PYTHONPATH=$PWD .venv/bin/python bench/soak/faults_soak.py --seconds 600 --json out.json

``--profile short`` is what CI runs (tests/faults/test_faults_short.py); ``long`` is the full
schedule (60 s partitions, 20 s gateway loss, 30 s of 200 ms delay and 5 % loss) for
``--seconds`` (default 600; the 30-minute soak is ``--seconds 1800``). Exit status 0 when every
check passed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "faults"))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from faults_run import LONG, SHORT, Report, Runner  # noqa: E402


def summary(r: Report) -> str:
    kinds = Counter(e.kind for e in r.events)
    lines = [
        f"fault phase: {r.profile.seconds:.0f} s, seed {r.profile.seed},"
        f" setup {r.setup_seconds:.1f} s",
        f"faults: {len(r.events)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})",
        f"acknowledged register writes: {r.acked_puts}, acknowledged unique writes:"
        f" {r.acked_unique}, lost: {r.lost}",
        f"reads in the history: {r.reads}; failed requests: {r.failed}",
        f"history: {r.linearizable}",
        "longest write outage per fault kind (s), local: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.outage.items())),
        "longest write outage per fault kind (s), ?dc=: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.outage_xdc.items())),
        f"?dc= requests while a gateway was down: {r.gateway_xdc[0]} ok, {r.gateway_xdc[1]} failed",
        "partition reconvergence (s): "
        + ", ".join("none" if e.reconverge is None else f"{e.reconverge:.1f}"
                    for e in r.events if e.kind == "partition"),
        f"unexpected exits: {r.unexpected_exits or 'none'}; tracebacks: {r.tracebacks or 'none'}",
    ]
    if r.rss:
        growth = [(last - first) / first * 100 for first, last, _ in r.rss.values() if first]
        lines.append(
            "RSS after warm-up, processes never restarted (first -> last sample, kB): median"
            f" growth {statistics.median(growth):.1f} %,"
            f" max {max(growth):.1f} %; "
            + ", ".join(f"{n} {a}->{b}" for n, (a, b, _) in sorted(r.rss.items())))
    lines.append("top errors: " + "; ".join(f"{n}x {e}" for e, n in r.errors.items()))
    lines.append("FAILURES: " + " | ".join(r.failures) if r.failures else "all checks passed")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=("short", "long"), default="long")
    p.add_argument("--seconds", type=float, default=None, help="length of the fault phase")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds after the load starts before RSS is compared (long: 60)")
    p.add_argument("--dir", default=None, help="where to keep configs and logs")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    args = p.parse_args()
    profile = SHORT if args.profile == "short" else LONG
    if args.seconds is not None:
        profile = attrs.evolve(profile, seconds=args.seconds)
    if args.warmup is not None:
        profile = attrs.evolve(profile, warmup=args.warmup)
    if args.seed is not None:
        profile = attrs.evolve(profile, seed=args.seed)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="wanfed-faults-"))
    print(f"faults: logs in {root}", flush=True)
    report = Runner(root, profile).run()
    print(summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(attrs.asdict(report), indent=1, default=str))
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
