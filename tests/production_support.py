"""The production layout's fail-over checks, shared by the loopback and the namespace e2e tests:
a writer thread that crosses datacenters through client agents with ``?dc=``, the longest
outage after a fault, the leader of a datacenter, and the final read-back of every acknowledged
write."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from wanfedtx.cli.demo_topology import Layout


def request(url: str, data: bytes | None = None, timeout: float = 15) -> tuple[int, bytes]:
    """GET (PUT with ``data``): status and body; status 0 and the error when it did not connect."""
    req = urllib.request.Request(url, data=data, method="PUT" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())
    except OSError as e:
        return 0, str(e).encode()


class Writer(threading.Thread):
    """Writes ``<dc>-to-<other>/<n>`` through the client agents of ``dc`` (alternately) with
    ``?dc=<other>``, one at a time; remembers the acknowledged keys and when each was acked."""

    def __init__(self, layout: Layout, dc: str, other: str) -> None:
        super().__init__(daemon=True)
        self.layout, self.dc, self.other = layout, dc, other
        self.acked: list[tuple[float, str, bytes]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        for n in itertools.count(1):
            if self.stopping.is_set():
                return
            key, value = f"{self.dc}-to-{self.other}/{n:05d}", f"v{n}".encode()
            client = self.layout.client_http(self.dc, 1 + n % self.layout.clients)
            code, body = request(f"{client}/v1/kv/{key}?dc={self.other}", value)
            if code == 200 and body.strip() == b"true":
                self.acked.append((time.monotonic(), key, value))
            else:
                self.errors.append(f"{code} {body[:120]!r}")
                self.stopping.wait(0.05)  # pace retries while the path is down

    def acks_after(self, t: float) -> int:
        return sum(1 for at, _, _ in self.acked if at > t)

    def outage(self, t: float, until: float = float("inf")) -> float:
        """The longest gap between acknowledged writes from the last one before ``t`` to
        ``until`` (the end of this fault's phase)."""
        times = [at for at, _, _ in self.acked]
        before = [at for at in times if at <= t]
        after = [at for at in times if t < at <= until]
        if not before or not after:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise([before[-1], *after]))


def leader(layout: Layout, dc: str) -> int:
    """The index (1..servers) of ``dc``'s leader, asked to any server that answers; 0 if none."""
    for i in range(1, layout.servers + 1):
        code, body = request(f"{layout.server_http(dc, i)}/v1/status/leader", timeout=2)
        if code == 200 and body:
            addr = json.loads(body)
            for j in range(1, layout.servers + 1):
                if addr == f"{layout.server_ip(dc, j)}:8300":
                    return j
    return 0


def stop_and_check(writers: Sequence[Writer], outages: Sequence[tuple[str, float]]) -> None:
    """Stop the writers, print the outages, and read every acknowledged write back with
    ``?consistent`` through client agent 2 of the datacenter it was written to (the one whose
    gateway still runs): nothing acknowledged may be missing."""
    for w in writers:
        w.stopping.set()
    for w in writers:
        w.join(timeout=30)
    print()
    for what, worst in outages:
        print(f"longest outage after {what}: {worst:.2f}s")
    print(f"acknowledged writes: {sum(len(w.acked) for w in writers)}")
    for w in writers:
        client = w.layout.client_http(w.other, 2)
        code, body = request(f"{client}/v1/kv/{w.dc}-to-{w.other}/?recurse&consistent")
        assert code == 200, body
        entries: list[dict[str, Any]] = json.loads(body)
        stored = {e["Key"]: base64.b64decode(e["Value"] or "") for e in entries}
        lost = [key for _, key, value in w.acked if stored.get(key) != value]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
