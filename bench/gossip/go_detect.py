"""Go memberlist failure-detection time for N real members on loopback (same profile as sim.py).

    .venv/bin/python bench/gossip/go_detect.py --nodes 10 --profile lan

Starts N Go mlpeer processes (tests/interop/go/mlpeer, built from Debian's memberlist), joins them
through the first, waits until every one sees N members, SIGKILLs the last and reports the wall time
until every survivor has emitted ``leave`` for it (the slowest survivor decides).
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "interop"))

from gossip_gopeers import GoPeer, build_peer
from netutil import free_port


def event_time(stamp: str) -> float:
    """Seconds since the epoch from the peer's RFC 3339 (nanosecond) UTC timestamp."""
    date, _, frac = stamp.rstrip("Z").partition(".")
    base = datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.UTC)
    return base.timestamp() + float("0." + (frac or "0"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    a = p.parse_args()
    binary = build_peer("mlpeer")
    peers: list[GoPeer] = []
    try:
        first = free_port()
        for i in range(a.nodes):
            port = first if i == 0 else free_port()
            args = [str(binary), "-name", f"g{i}", "-port", str(port), "-profile", a.profile]
            if i:
                args += ["-join", f"127.0.0.1:{first}"]
            peers.append(GoPeer(args))
            peers[-1].wait_blocking(lambda e: e["event"] in ("ready", "joined"), 10)
        for peer in peers:
            peer.wait_blocking(
                lambda e: e["event"] == "join" and e["node"] == f"g{a.nodes - 1}",
                60,
            )
        victim = peers[-1]
        t0 = time.time()
        victim.signal(signal.SIGKILL)
        worst = 0.0
        for peer in peers[:-1]:
            ev = peer.wait_blocking(
                lambda e: e["event"] == "leave" and e["node"] == f"g{a.nodes - 1}", 120
            )
            worst = max(worst, event_time(ev["t"]) - t0)
        print({"n": a.nodes, "profile": a.profile, "go_detect_all_s": round(worst, 2)})
    finally:
        for peer in peers:
            peer.stop()


if __name__ == "__main__":
    main()
