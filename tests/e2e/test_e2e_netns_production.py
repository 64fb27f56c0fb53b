"""The production layout across network namespaces: 3 servers, 2 client agents and 2 gateways
per datacenter, and only the gateway ports cross between the sites.

Each datacenter runs in its own network namespace on a bridge in the test's namespace, with the
addresses of ``wanfed demo -servers 3 -clients 2`` moved from loopback to ``10.N.<d>.x`` (the
primary ``d = 1``, the secondary ``d = 2``): servers ``.1-.3``, client agents ``.11-.12``,
gateway ``g`` beside client ``g``, registered through it with ``-register -expose-servers``;
the test host is ``10.N.0.254``. An nftables input filter in each namespace drops every packet
from the other datacenter except to its own gateway port (4431 / 4432).

Shown: every ``case-wanfed-gw`` assertion (for each gateway, the WAN pool of all six servers); a
KV write through a client agent of each datacenter with ``?dc=`` lands in the other; then, while
two writers (one per direction) write through the client agents with ``?dc=``, the leader of
each datacenter is killed (``kill -9``) in turn and then one gateway of each: no acknowledged
write is lost (read back with ``?consistent`` at the end), the longest outage around each kill
is printed, and nothing tried to go around the gateways (the drop counters stay 0).

Names (namespaces, bridge, links) carry a random tag so two runs can share the machine; every
process, namespace and link is removed at the end, on failure too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_support import unused_net16
from production_support import Writer, leader, stop_and_check

from wanfedtx.cli.demo import DCS, GATEWAY_PORTS, _wait_for_checks, poll_until
from wanfedtx.cli.demo_topology import Layout, ProductionFederation

pytestmark = pytest.mark.integration

SERVERS, CLIENTS = 3, 2


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs root and {tool} for the network-namespace test")
        pytest.skip(f"needs root and {tool} to build network namespaces")
    return path


def _run(*cmd: str, stdin: str | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


class Sites:
    """Two namespaces on a bridge with the production layout's addresses."""

    def __init__(self) -> None:
        self.ip, self.nft = _need("ip"), _need("nft")
        tag = uuid.uuid4().hex[:6]
        self.net = unused_net16(self.ip)
        self.host = f"{self.net}.0.254"
        self.bridge = f"wfpb{tag}"
        self.ns = {dc: f"wfp{i}{tag}" for i, dc in enumerate(DCS)}
        self.veth = {dc: f"wfpv{i}{tag}" for i, dc in enumerate(DCS)}
        self.ips = {dc: f"{self.net}.{i + 1}.1" for i, dc in enumerate(DCS)}
        self.layout = Layout(self.ips, SERVERS, CLIENTS)

    def prefix(self, dc: str) -> list[str]:
        return [self.ip, "netns", "exec", self.ns[dc]]

    def up(self) -> None:
        ip, lay = self.ip, self.layout
        _run(ip, "link", "add", self.bridge, "type", "bridge")
        _run(ip, "addr", "add", f"{self.host}/16", "dev", self.bridge)
        _run(ip, "link", "set", self.bridge, "up")
        for dc in DCS:
            ns = self.ns[dc]
            _run(ip, "netns", "add", ns)
            _run(ip, "link", "add", self.veth[dc], "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run(ip, "link", "set", self.veth[dc], "master", self.bridge)
            _run(ip, "link", "set", self.veth[dc], "up")
            addrs = [lay.server_ip(dc, i) for i in range(1, SERVERS + 1)]
            addrs += [lay.client_ip(dc, k) for k in range(1, CLIENTS + 1)]
            for a in addrs:
                _run(ip, "-n", ns, "addr", "add", f"{a}/16", "dev", "eth0")
            _run(ip, "-n", ns, "link", "set", "eth0", "up")
            _run(ip, "-n", ns, "link", "set", "lo", "up")
            # Within a namespace its agents talk over lo; from outside only the test host
            # and this datacenter's gateway port are let in.
            rules = (
                "table inet wanfed {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                '    iifname "lo" accept\n'
                "    ct state established,related accept\n"
                f"    ip saddr {self.host} accept\n"
                f"    tcp dport {GATEWAY_PORTS[dc]} accept\n"
                "    counter drop\n"
                "  }\n"
                "}\n"
            )
            _run(*self.prefix(dc), self.nft, "-f", "-", stdin=rules)

    def down(self) -> None:
        for dc in DCS:
            subprocess.run([self.ip, "netns", "del", self.ns[dc]], capture_output=True)
            subprocess.run([self.ip, "link", "del", self.veth[dc]], capture_output=True)
        subprocess.run([self.ip, "link", "del", self.bridge], capture_output=True)

    def dropped(self, dc: str) -> int:
        out = _run(*self.prefix(dc), self.nft, "list", "table", "inet", "wanfed")
        for line in out.splitlines():
            if "counter" in line and "drop" in line:
                return int(line.split("packets")[1].split()[0])
        raise AssertionError(f"no drop counter in {out}")


@pytest.fixture
def sites() -> Iterator[Sites]:
    s = Sites()
    try:
        s.up()
        yield s
    finally:
        s.down()


def test_production_layout_in_namespaces(sites: Sites, tmp_path: Path) -> None:
    lay = sites.layout
    fed = ProductionFederation(tmp_path, sites.ips, SERVERS, CLIENTS,
                               prefix={dc: sites.prefix(dc) for dc in DCS})
    writers = [Writer(lay, "primary", "secondary"), Writer(lay, "secondary", "primary")]
    try:
        fed.start()
        checks = fed.checks()
        failed = _wait_for_checks(checks, fed.procs, 240)
        assert not failed, f"checks failed: {failed}\n{fed.tails(set(DCS))}"
        # The names of the checks: every case-wanfed-gw assertion for both gateways, and the
        # ?dc= writes through a client agent.
        names = [name for name, _ in checks.all()]
        for dc, other in (("primary", "secondary"), ("secondary", "primary")):
            for g in (1, 2):
                assert f"{dc}: gateway {g} admin is up" in names
                assert f"{dc}: gateway {g} has 2 healthy endpoints for {other}" in names
            assert f"{dc}: WAN pool shows 6 alive servers" in names
            assert (f"{dc}: KV write through client agent with ?dc={other} lands in {other}"
                    in names)

        for w in writers:
            w.start()
        assert poll_until(lambda: all(w.acks_after(0) >= 5 for w in writers), 60)

        outages: list[tuple[str, float]] = []

        def fault(what: str, proc: subprocess.Popen[bytes]) -> None:
            t = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            ok = poll_until(lambda: all(w.acks_after(t) >= 5 for w in writers), 90)
            # Let the phase run a little so a later stall of this fault is counted too.
            poll_until(lambda: all(w.acks_after(t) >= 20 for w in writers), 10)
            until = time.monotonic()
            outages.append((what, max(w.outage(t, until) for w in writers)))
            assert ok, f"writes did not resume after {what}: {[w.errors[-3:] for w in writers]}"

        for dc in DCS:
            assert poll_until(lambda: leader(lay, dc) > 0, 30)  # noqa: B023 (called at once)
            i = leader(lay, dc)
            node = lay.server_node(dc, i)
            proc = next(p.proc for p in fed.agents if p.dc == dc and p.name == node)
            fault(f"kill -9 {dc} leader {node}", proc)
            assert poll_until(lambda: leader(lay, dc) not in (0, i), 30)  # noqa: B023
        for dc in DCS:
            proc = next(p.proc for p in fed.gateways if p.dc == dc and p.name == "gateway1")
            fault(f"kill -9 {dc} gateway 1", proc)

        stop_and_check(writers, outages)
        # The servers' RPC and gossip ports were closed to the other site, and nothing tried
        # them: every packet between the datacenters went to a gateway port.
        for dc in DCS:
            assert sites.dropped(dc) == 0, f"{dc}: something went around the gateways"
    finally:
        for w in writers:
            w.stopping.set()
        fed.stop()
        for p in fed.processes:  # no process outlives its namespace
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
