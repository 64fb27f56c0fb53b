"""``case-wanfed-gw`` across network namespaces: only the gateway ports cross between sites.

Each datacenter runs in its own network namespace ("host"), both attached to a bridge in the
test's namespace. An nftables input filter in each datacenter's namespace drops every new
connection and packet from the other datacenter except to its own mesh gateway's port (4431 in
the primary, 4432 in the secondary); the test host may reach the HTTP and admin APIs. With the
servers' RPC (8300) and WAN gossip (8302) ports closed to the other site, the reference's checks
must still all pass, and the drop counters show that nothing even tried to go around the
gateways. Namespaces, links and rules are always removed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanfedtx.cli.demo import DCS, GATEWAY_PORTS, Federation

pytestmark = pytest.mark.integration


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs root and {tool} for the network-namespace test")
        pytest.skip(f"needs root and {tool} to build network namespaces")
    return path


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


@pytest.fixture
def sites() -> Iterator[dict[str, object]]:
    ip, nft = _need("ip"), _need("nft")
    tag = uuid.uuid4().hex[:6]
    net = f"10.{random.randint(64, 250)}.{random.randint(0, 250)}"
    bridge = f"wfbr{tag}"
    ns = {dc: f"wf{dc[:3]}{tag}" for dc in DCS}
    addrs = {"primary": f"{net}.1", "secondary": f"{net}.2"}
    host = f"{net}.254"
    try:
        _run(ip, "link", "add", bridge, "type", "bridge")
        _run(ip, "addr", "add", f"{host}/24", "dev", bridge)
        _run(ip, "link", "set", bridge, "up")
        for i, dc in enumerate(DCS):
            _run(ip, "netns", "add", ns[dc])
            outer = f"wfv{i}{tag}"
            _run(ip, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns[dc])
            _run(ip, "link", "set", outer, "master", bridge)
            _run(ip, "link", "set", outer, "up")
            _run(ip, "-n", ns[dc], "addr", "add", f"{addrs[dc]}/24", "dev", "eth0")
            _run(ip, "-n", ns[dc], "link", "set", "eth0", "up")
            _run(ip, "-n", ns[dc], "link", "set", "lo", "up")
            rules = (
                "table inet wanfed {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                '    iifname "lo" accept\n'
                "    ct state established,related accept\n"
                f"    ip saddr {host} accept\n"
                f"    tcp dport {GATEWAY_PORTS[dc]} accept\n"
                "    counter drop\n"
                "  }\n"
                "}\n"
            )
            subprocess.run(
                [ip, "netns", "exec", ns[dc], nft, "-f", "-"], input=rules, text=True, check=True
            )
        yield {"ip": ip, "nft": nft, "ns": ns, "addrs": addrs}
    finally:
        for dc in DCS:
            subprocess.run([ip, "netns", "del", ns[dc]], capture_output=True)
        subprocess.run([ip, "link", "del", bridge], capture_output=True)


def _dropped(ip: object, nft: object, ns: str) -> int:
    out = _run(str(ip), "netns", "exec", ns, str(nft), "list", "table", "inet", "wanfed")
    for line in out.splitlines():
        if "counter" in line and "drop" in line:
            return int(line.split("packets")[1].split()[0])
    raise AssertionError(f"no drop counter in {out}")


def test_only_gateway_ports_cross_between_datacenters(
    sites: dict[str, object], tmp_path: Path
) -> None:
    ip, nft = sites["ip"], sites["nft"]
    ns: dict[str, str] = sites["ns"]  # type: ignore[assignment]
    addrs: dict[str, str] = sites["addrs"]  # type: ignore[assignment]
    prefix = {dc: [str(ip), "netns", "exec", ns[dc]] for dc in DCS}
    fed = Federation(tmp_path, addrs, prefix)
    lines: list[str] = []
    try:
        fed.start(lines.append)
        ok = fed.wait(120)
    finally:
        fed.stop()
    logs = {
        f"{dc}/{name}": (tmp_path / dc / f"{name}.log").read_text(errors="replace")[-3000:]
        for dc in DCS
        for name in ("agent", "gateway")
    }
    assert ok, "checks failed; logs:\n" + "\n".join(f"== {k}\n{v}" for k, v in logs.items())
    # The servers' ports were closed to the other site, and nothing tried them: every byte
    # between the datacenters went to a gateway port.
    for dc in DCS:
        assert _dropped(ip, nft, ns[dc]) == 0, f"{dc}: something went around the gateways"
