"""The production layout on loopback, end to end: ``wanfed demo -servers 3 -clients 2``.

Two datacenters of 3 servers, 2 client agents and 2 mesh gateways (registered through the client
agents with ``-register -expose-servers``). The demo's checks are every ``case-wanfed-gw``
assertion (for each gateway) plus a KV write through a client agent with ``?dc=`` read back in
the other datacenter. Then, while two writers (one per direction) write through client agents
with ``?dc=`` to the other datacenter, the leader of each datacenter is killed (``kill -9``) in
turn, then one gateway of each: no acknowledged write is lost (each is read back with
``?consistent``), and the longest gap between acknowledged writes around each kill is printed.

The demo uses fixed addresses (127.0.1.x, 127.0.2.x and Consul's ports): it must not run beside
the other demo tests (the e2e suite runs sequentially).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from production_support import Writer, leader, stop_and_check

from wanfedtx.cli.demo import poll_until
from wanfedtx.cli.demo_topology import Layout

pytestmark = pytest.mark.integration

IPS = {"primary": "127.0.1.1", "secondary": "127.0.2.1"}
LAYOUT = Layout(IPS, servers=3, clients=2)


def _pids_naming(*needles: str) -> list[int]:
    """Pids whose command line contains every needle, among the processes of this test's network
    namespace: another test run on the machine starts the same gateways (same addresses, each in
    its own namespace), and killing one of those would break that run."""
    here = os.stat("/proc/thread-self/ns/net").st_ino
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if not all(n.encode() in cmdline for n in needles):
                continue
            if os.stat(f"/proc/{pid}/ns/net").st_ino != here:
                continue
        except OSError:
            continue
        out.append(int(pid))
    return out


def _kill(pids: list[int]) -> None:
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)


def test_production_layout_survives_leader_and_gateway_loss(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "wanfed"
    proc = subprocess.Popen(
        [str(exe), "demo", "-servers", "3", "-clients", "2", "-timeout", "90",
         "-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    writers = [Writer(LAYOUT, "primary", "secondary"), Writer(LAYOUT, "secondary", "primary")]
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # until the demo says it is running (or exits)
            seen.append(line)
            if line.startswith("Running"):
                break
        out = "".join(seen)
        assert seen and seen[-1].startswith("Running"), out
        # What `wanfed demo -check -servers 3 -clients 2` checks, all passed.
        assert "FAIL" not in out
        for dc, other in (("primary", "secondary"), ("secondary", "primary")):
            for g in (1, 2):
                assert f"ok   {dc}: gateway {g} admin is up" in out
                assert f"ok   {dc}: gateway {g} has 2 healthy endpoints for {other}" in out
            assert f"ok   {dc}: RPC to {other}" in out
            assert f"ok   {dc}: WAN pool shows 6 alive servers" in out
            assert f"ok   {dc}: KV write through client agent with ?dc={other} lands in" in out
        # Drain the demo's output in the background (it reports the killed processes).
        rest: list[str] = []
        threading.Thread(target=lambda: rest.extend(proc.stdout or []), daemon=True).start()

        for w in writers:
            w.start()
        assert poll_until(lambda: all(w.acks_after(0) >= 5 for w in writers), 30)

        outages: list[tuple[str, float]] = []

        def fault(what: str, pids: list[int]) -> None:
            t = time.monotonic()
            _kill(pids)
            ok = poll_until(lambda: all(w.acks_after(t) >= 5 for w in writers), 60)
            worst = max(w.outage(t) for w in writers)
            outages.append((what, worst))
            assert ok, f"writes did not resume after {what}: {[w.errors[-3:] for w in writers]}"

        for dc in ("primary", "secondary"):
            assert poll_until(lambda: leader(LAYOUT, dc) > 0, 30)  # noqa: B023 (called at once)
            i = leader(LAYOUT, dc)
            node = LAYOUT.server_node(dc, i)
            fault(f"kill -9 {dc} leader {node}", _pids_naming(str(tmp_path / dc / node)))
            assert poll_until(lambda: leader(LAYOUT, dc) not in (0, i), 30)  # noqa: B023
        for dc in ("primary", "secondary"):
            admin = LAYOUT.admin_addr(dc, 1)
            fault(f"kill -9 {dc} gateway 1", _pids_naming("gateway", f"-admin-bind {admin}"))

        stop_and_check(writers, outages)
    finally:
        for w in writers:
            w.stopping.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in _pids_naming(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
        for dc in IPS:
            for g in (1, 2):
                for pid in _pids_naming("gateway", f"-admin-bind {LAYOUT.admin_addr(dc, g)}"):
                    os.kill(pid, signal.SIGKILL)
