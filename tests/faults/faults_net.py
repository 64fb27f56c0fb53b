"""The fault suite's network: one network namespace per datacenter on a bridge, and the
inter-datacenter faults (partition, delay, loss) applied inside the namespaces.

Addresses: the bridge (the test host) is ``10.N.0.254/16``; datacenter ``d`` (1, 2, ...) gets
``10.N.d.0/24`` on its namespace's ``eth0``: servers ``.1-.3``, gateways ``.11-.12``. Every
process binds its own address, so all of them use Consul's default ports.

Faults between the primary and a secondary are nftables rules in the ``inet faults`` table of
each side's namespace: a partition drops every packet to or from the other side; loss drops a
share of them (``numgen random``). Delay uses ``tc netem`` where the kernel has it; where it does
not (some VM kernels ship without ``sch_netem``), the other side's gateway ports are redirected
to ``wan_delay.py`` in the namespace, which holds every chunk for the delay before passing it on
(its own connections carry a firewall mark the redirect skips); connections already open
between the datacenters are cut (``ss -K``) so that they are dialed again through the relay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from netns_support import unused_net16

from wanfedtx.cli.demo import poll_until

HERE = Path(__file__).resolve().parent
GATEWAY_PORT = 8443
DELAY_PORT = 8999
DELAY_MARK = 0x77


def need_root_tools() -> tuple[str, str, str]:
    """``ip``, ``nft`` and ``tc``; skip without them (fail in CI, which must run these)."""
    paths = [shutil.which(t) for t in ("ip", "nft", "tc")]
    if None in paths or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs root, iproute2 and nftables for the fault suite")
        pytest.skip("the fault suite needs root, iproute2 and nftables (network namespaces)")
    ip, nft, tc = (str(p) for p in paths)
    return ip, nft, tc


def run(*cmd: str, stdin: str | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


class Network:
    """Namespaces and addresses of ``dcs`` (the primary first)."""

    def __init__(self, dcs: tuple[str, ...]) -> None:
        self.ip, self.nft, self.tc = need_root_tools()
        tag = uuid.uuid4().hex[:6]
        self.net = unused_net16(self.ip)
        self.bridge = f"wffb{tag}"
        self.host = f"{self.net}.0.254"
        self.dcs = dcs
        self.ns = {dc: f"wff{i}{tag}" for i, dc in enumerate(dcs)}
        self.subnet = {dc: f"{self.net}.{i + 1}" for i, dc in enumerate(dcs)}
        self.netem = False
        self.delay_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.faults: dict[str, set[str]] = {dc: set() for dc in dcs}

    def server_ip(self, dc: str, i: int) -> str:
        return f"{self.subnet[dc]}.{i + 1}"

    def gateway_ip(self, dc: str, i: int) -> str:
        return f"{self.subnet[dc]}.{11 + i}"

    def prefix(self, dc: str) -> list[str]:
        return [self.ip, "netns", "exec", self.ns[dc]]

    def up(self) -> None:
        ip = self.ip
        run(ip, "link", "add", self.bridge, "type", "bridge")
        run(ip, "addr", "add", f"{self.host}/16", "dev", self.bridge)
        run(ip, "link", "set", self.bridge, "up")
        for i, dc in enumerate(self.dcs):
            ns = self.ns[dc]
            run(ip, "netns", "add", ns)
            outer = f"wffv{i}{self.bridge[4:]}"
            run(ip, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run(ip, "link", "set", outer, "master", self.bridge)
            run(ip, "link", "set", outer, "up")
            addrs = [self.server_ip(dc, j) for j in range(3)]
            addrs += [self.gateway_ip(dc, j) for j in range(2)]
            for a in addrs:
                run(ip, "-n", ns, "addr", "add", f"{a}/16", "dev", "eth0")
            run(ip, "-n", ns, "link", "set", "eth0", "up")
            run(ip, "-n", ns, "link", "set", "lo", "up")
            self._rules(dc)
        probe = subprocess.run(
            [*self.prefix(self.dcs[0]), self.tc, "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"], capture_output=True)
        if probe.returncode == 0:
            self.netem = True
            run(*self.prefix(self.dcs[0]), self.tc, "qdisc", "del", "dev", "lo", "root")

    def down(self) -> None:
        for p in self.delay_procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for i, ns in enumerate(self.ns.values()):
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True)
            subprocess.run([self.ip, "link", "del", f"wffv{i}{self.bridge[4:]}"],
                           capture_output=True)
        subprocess.run([self.ip, "link", "del", self.bridge], capture_output=True)

    # -- faults between the primary and another datacenter ------------------------------------

    def others(self, dc: str) -> list[str]:
        primary = self.dcs[0]
        return [d for d in self.dcs if d != dc] if dc == primary else [primary]

    def _rules(self, dc: str) -> None:
        """Write this datacenter's ``inet faults`` table from its active faults."""
        active = self.faults[dc]
        peers = [self.subnet[o] + ".0/24" for o in self.others(dc)]
        lines = []
        for peer in peers:
            if "partition" in active:
                lines.append(f"ip daddr {peer} counter drop")
            if "loss" in active:
                lines.append(f"ip daddr {peer} numgen random mod 100 < 5 counter drop")
        inbound = [f"ip saddr {p} counter drop" for p in peers if "partition" in active]
        nat = []
        if "delay" in active and not self.netem:
            for peer in peers:
                nat.append(f"ip daddr {peer} tcp dport {GATEWAY_PORT} meta mark != {DELAY_MARK}"
                           f" redirect to :{DELAY_PORT}")
        table = (
            "table inet faults {\n"
            "  chain out {\n    type filter hook output priority 0; policy accept;\n"
            + "".join(f"    {rule}\n" for rule in lines)
            + "  }\n  chain in {\n    type filter hook input priority 0; policy accept;\n"
            + "".join(f"    {rule}\n" for rule in inbound)
            + "  }\n  chain nat_out {\n    type nat hook output priority -100; policy accept;\n"
            + "".join(f"    {rule}\n" for rule in nat)
            + "  }\n}\n"
        )
        script = "flush ruleset\n" + table
        run(*self.prefix(dc), self.nft, "-f", "-", stdin=script)

    def set_fault(self, kind: str, dcs: list[str], on: bool, delay_ms: int = 200) -> None:
        """Switch fault ``kind`` (partition, loss, delay) on or off in the given datacenters."""
        for dc in dcs:
            if on:
                self.faults[dc].add(kind)
            else:
                self.faults[dc].discard(kind)
            if kind == "delay":
                self._delay(dc, on, delay_ms)
            self._rules(dc)
            if kind == "delay" and on and not self.netem:
                # Connections already open to the other side would bypass the relay: cut them
                # (they are dialed again, through it) as a link change would.
                for peer in self.others(dc):
                    subprocess.run([*self.prefix(dc), "ss", "-K", "dst",
                                    f"{self.subnet[peer]}.0/24", "dport", "=", str(GATEWAY_PORT)],
                                   capture_output=True)

    def _delay(self, dc: str, on: bool, delay_ms: int) -> None:
        if self.netem:
            dev = [self.tc, "qdisc", "del" if not on else "add", "dev", "eth0", "root"]
            if on:
                dev += ["netem", "delay", f"{delay_ms}ms"]
            run(*self.prefix(dc), *dev)
            return
        if on and dc not in self.delay_procs:
            cmd = [sys.executable, str(HERE / "wan_delay.py"), "--listen",
                   f"0.0.0.0:{DELAY_PORT}", "--delay", str(delay_ms / 1000), "--mark",
                   str(DELAY_MARK)]
            self.delay_procs[dc] = subprocess.Popen([*self.prefix(dc), *cmd])
            poll_until(  # listening before connections are sent to it
                lambda: f":{DELAY_PORT}" in run(
                    *self.prefix(dc), "ss", "-ltn", f"sport = :{DELAY_PORT}"),
                10, 0.05)
        elif not on and dc in self.delay_procs:
            p = self.delay_procs.pop(dc)
            p.kill()
            p.wait()

    def dropped(self, dc: str) -> int:
        """Packets the fault rules dropped in ``dc`` (all rules)."""
        out = run(*self.prefix(dc), self.nft, "list", "table", "inet", "faults")
        n = 0
        for line in out.splitlines():
            if "counter packets" in line:
                n += int(line.split("packets")[1].split()[0])
        return n
