"""The fault suite's processes: per datacenter three servers (``wanfed agent``, raft with
``bootstrap_expect = 3``, TLS with verify_incoming/outgoing/server_hostname, WAN federation
through mesh gateways) and two mesh gateways (``wanfed gateway -proxy-id``), each in its
datacenter's network namespace (``faults_net.Network``).

Gateway ``g`` of a datacenter is registered on server ``g`` with a TCP check on its port (as
``consul connect envoy -register`` adds one), so a dead gateway turns critical and drops out
of the federation state. Secondaries know both of the primary's gateways (``primary_gateways``).
Processes are started, SIGKILLed, SIGSTOPped and restarted by name (``p1``, ``pg2``, ...); each
keeps its log (appended across restarts) for the traceback check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import attrs
from faults_net import GATEWAY_PORT, Network

from wanfedtx.tls.certs import create_ca, create_cert


@attrs.define
class Proc:
    name: str
    dc: str
    kind: str  # "server" | "gateway"
    ip: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped
    expected_exit: bool = False
    rss_kb: list[tuple[float, int]] = attrs.Factory(list)  # (monotonic time, kB), this run
    starts: int = 0
    unexpected_exits: list[int] = attrs.Factory(list)

    @property
    def http(self) -> str:
        return f"http://{self.ip}:8500"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def _server_name(dc: str, i: int) -> str:
    return f"{dc[0]}{i + 1}"


class Cluster:
    def __init__(self, root: Path, net: Network) -> None:
        self.root = root
        self.net = net
        self.dcs = net.dcs
        self.primary = net.dcs[0]
        self.procs: dict[str, Proc] = {}
        self._write()

    # -- files -----------------------------------------------------------------------------

    def _write(self) -> None:
        ca = create_ca()
        wanfed = [sys.executable, "-m", "wanfedtx.cli.main"]
        primary_gws = [f'"{self.net.gateway_ip(self.primary, g)}:{GATEWAY_PORT}"'
                       for g in range(2)]
        for dc in self.dcs:
            ips = [self.net.server_ip(dc, i) for i in range(3)]
            for i, ip in enumerate(ips):
                name = _server_name(dc, i)
                d = self.root / dc / name
                (d / "conf").mkdir(parents=True, exist_ok=True)
                cert = create_cert(ca, "server", dc=dc, node=name)
                (d / "ca.pem").write_bytes(ca.cert_pem)
                (d / "cert.pem").write_bytes(cert.cert_pem)
                (d / "key.pem").write_bytes(cert.key_pem)
                lines = [
                    f'datacenter = "{dc}"',
                    f'primary_datacenter = "{self.primary}"',
                    f'node_name = "{name}"',
                    "server = true",
                    "bootstrap_expect = 3",
                    "performance { raft_multiplier = 1 }",  # fast elections
                    f'bind_addr = "{ip}"',
                    f'client_addr = "{ip}"',
                    f'data_dir = "{d / "data"}"',
                    "retry_join = [" + ", ".join(f'"{x}"' for x in ips) + "]",
                    'retry_interval = "1s"',
                    "ports { dns = -1 }",
                    "connect {\n  enabled = true\n  enable_mesh_gateway_wan_federation = true\n}",
                    f'ca_file = "{d / "ca.pem"}"',
                    f'cert_file = "{d / "cert.pem"}"',
                    f'key_file = "{d / "key.pem"}"',
                    "verify_incoming = true",
                    "verify_outgoing = true",
                    "verify_server_hostname = true",
                ]
                if dc != self.primary:
                    lines += [
                        f"primary_gateways = [{', '.join(primary_gws)}]",
                        'primary_gateways_interval = "5s"',
                        'retry_interval_wan = "2s"',
                    ]
                if i < 2:
                    gw = self.net.gateway_ip(dc, i)
                    lines.append(
                        "services {\n"
                        '  name = "mesh-gateway"\n  id = "mesh-gateway"\n'
                        '  kind = "mesh-gateway"\n'
                        f'  address = "{gw}"\n  port = {GATEWAY_PORT}\n'
                        '  meta { consul-wan-federation = "1" }\n'
                        f'  check {{\n    name = "Mesh Gateway Listening"\n'
                        f'    tcp = "{gw}:{GATEWAY_PORT}"\n    interval = "1s"\n'
                        '    timeout = "1s"\n  }\n'
                        "}"
                    )
                (d / "conf" / "agent.hcl").write_text("\n".join(lines) + "\n")
                self.procs[name] = Proc(
                    name, dc, "server", ip,
                    [*wanfed, "agent", "-config-dir", str(d / "conf")], d / "agent.log")
            for g in range(2):
                gw = self.net.gateway_ip(dc, g)
                name = f"{dc[0]}g{g + 1}"
                cmd = [*wanfed, "gateway", "-proxy-id", "mesh-gateway",
                       "-http-addr", f"{ips[g]}:8500", "-address", f"{gw}:{GATEWAY_PORT}",
                       "-admin-bind", f"{gw}:19000"]
                (self.root / dc).mkdir(parents=True, exist_ok=True)
                self.procs[name] = Proc(name, dc, "gateway", gw, cmd,
                                        self.root / dc / f"{name}.log")

    # -- processes ---------------------------------------------------------------------------

    def servers(self, dc: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.dc == dc and p.kind == "server"]

    def gateways(self, dc: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.dc == dc and p.kind == "gateway"]

    def start(self, name: str) -> None:
        p = self.procs[name]
        env = dict(os.environ)
        with p.log.open("ab") as f:
            p.popen = subprocess.Popen([*self.net.prefix(p.dc), *p.cmd], stdout=f,
                                       stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        p.expected_exit = False
        p.stopped = False
        p.starts += 1
        p.rss_kb = []

    def start_all(self) -> None:
        for p in self.procs.values():
            if p.kind == "server":
                self.start(p.name)
        for p in self.procs.values():
            if p.kind == "gateway":
                self.start(p.name)

    def _signal(self, p: Proc, sig: int) -> None:
        if p.popen is not None and p.popen.poll() is None:
            # ip netns exec execs the command: the child is the process itself.
            os.kill(p.popen.pid, sig)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        p.expected_exit = True
        self._signal(p, signal.SIGKILL)
        if p.popen is not None:
            p.popen.wait()

    def pause(self, name: str) -> None:
        self._signal(self.procs[name], signal.SIGSTOP)
        self.procs[name].stopped = True

    def resume(self, name: str) -> None:
        self._signal(self.procs[name], signal.SIGCONT)
        self.procs[name].stopped = False

    def stop_all(self) -> None:
        """SIGCONT anything paused, then SIGTERM (gateways last), SIGKILL after 15 s."""
        for p in self.procs.values():
            if p.stopped:
                self.resume(p.name)
        for kind in ("server", "gateway"):
            group = [p for p in self.procs.values() if p.kind == kind and p.alive()]
            for p in group:
                p.expected_exit = True
                self._signal(p, signal.SIGTERM)
            for p in group:
                assert p.popen is not None
                try:
                    p.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait()

    def watch(self) -> bool:
        """Record RSS of every live process and any exit nobody asked for; True when such an
        exit was seen this time."""
        exited = False
        for p in self.procs.values():
            if p.popen is None:
                continue
            rc = p.popen.poll()
            if rc is not None:
                if not p.expected_exit:
                    p.unexpected_exits.append(rc)
                    p.expected_exit = True  # counted once
                    exited = True
                continue
            try:
                with open(f"/proc/{p.popen.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            p.rss_kb.append((time.monotonic(), int(line.split()[1])))
            except OSError:
                pass
        return exited

    def tracebacks(self) -> dict[str, int]:
        out = {}
        for p in self.procs.values():
            if p.log.exists():
                n = p.log.read_text(errors="replace").count("Traceback (most recent call last)")
                if n:
                    out[p.name] = n
        return out


def http_json(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        return 0, str(e)
