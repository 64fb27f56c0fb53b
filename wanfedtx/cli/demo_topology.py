"""The production layout of ``wanfed demo -servers N -clients M``, on this machine's loopback
(or, given other addresses and a command prefix, in one network namespace per datacenter).

Each datacenter gets N servers (``bootstrap_expect = N``, TLS as in the 1-server demo), M client
agents and, with more than one server, two mesh gateways. Each agent has its own loopback
address inside its datacenter's /24 (``127.0.1.x`` for the primary, ``127.0.2.x`` for the
secondary by default; ``<net>.<d>.x`` below), so every agent uses Consul's default ports:

- server ``i`` (1..N): ``<net>.<d>.<i>``, node ``pri1``, ``pri2``, ... (``sec1``, ... in the
  secondary), RPC 8300, LAN 8301, WAN 8302, HTTP 8500;
- client ``k`` (1..M): ``<net>.<d>.<10+k>``, node ``pri-client1``, ...; LAN 8301, HTTP 8500;
- gateway ``g`` runs beside client ``g`` (same address), started as ``wanfed gateway
  -gateway=mesh -register -expose-servers`` through that client's HTTP API, listening on its
  address (the datacenter's gateway port, 4431 / 4432) with its admin API there too.

Secondaries know the primary's gateways only (``primary_gateways``). The checks are the
``case-wanfed-gw`` ones (every gateway, the WAN pool of all servers) plus a KV write through a
client agent of each datacenter with ``?dc=`` that is read back in the other one.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from wanfedtx.cli.demo import (
    ADMIN_PORTS,
    GATEWAY_PORTS,
    NODES,
    Checks,
    _get,
    _put,
    _start,
    poll_until,
)

CLIENT_BASE = 10  # client k listens on <net>.<d>.<10 + k>


def subnet(ip: str) -> str:
    """``127.0.1.1`` -> ``127.0.1``: the datacenter's /24."""
    return ip.rsplit(".", 1)[0]


class Layout:
    """Who runs where: addresses and node names of every agent and gateway."""

    def __init__(self, ips: dict[str, str], servers: int, clients: int) -> None:
        self.dcs = tuple(ips)  # primary first
        self.servers = servers
        self.clients = clients
        self.gateways = 2 if servers > 1 else 1
        self.net = {dc: subnet(ip) for dc, ip in ips.items()}

    def server_ip(self, dc: str, i: int) -> str:
        return f"{self.net[dc]}.{i}"

    def client_ip(self, dc: str, k: int) -> str:
        return f"{self.net[dc]}.{CLIENT_BASE + k}"

    def gateway_ip(self, dc: str, g: int) -> str:
        return self.client_ip(dc, g)

    def server_node(self, dc: str, i: int) -> str:
        return f"{NODES[dc]}{i}"

    def client_node(self, dc: str, k: int) -> str:
        return f"{NODES[dc]}-client{k}"

    def gateway_addr(self, dc: str, g: int) -> str:
        return f"{self.gateway_ip(dc, g)}:{GATEWAY_PORTS[dc]}"

    def admin_addr(self, dc: str, g: int) -> str:
        return f"{self.gateway_ip(dc, g)}:{ADMIN_PORTS[dc]}"

    def server_http(self, dc: str, i: int) -> str:
        return f"http://{self.server_ip(dc, i)}:8500"

    def client_http(self, dc: str, k: int) -> str:
        return f"http://{self.client_ip(dc, k)}:8500"

    def gateway_command(self, dc: str, g: int) -> list[str]:
        """The gateway's flags, as printed by the demo and in docs/federation.md."""
        return [
            "gateway",
            "-gateway=mesh",
            "-register",
            "-expose-servers",
            "-address",
            self.gateway_addr(dc, g),
            "-wan-address",
            self.gateway_addr(dc, g),
            "-http-addr",
            f"{self.client_ip(dc, g)}:8500",
            "-admin-bind",
            self.admin_addr(dc, g),
        ]


def _write_tls(root: Path, layout: Layout) -> None:
    from wanfedtx.tls.certs import create_ca, create_cert

    ca = create_ca()
    for dc in layout.dcs:
        tls = root / dc / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        (tls / "consul-agent-ca.pem").write_bytes(ca.cert_pem)
        for i in range(1, layout.servers + 1):
            cert = create_cert(ca, "server", dc=dc, node=layout.server_node(dc, i))
            (tls / f"{dc}-server-consul-{i - 1}.pem").write_bytes(cert.cert_pem)
            (tls / f"{dc}-server-consul-{i - 1}-key.pem").write_bytes(cert.key_pem)
        for k in range(1, layout.clients + 1):
            cert = create_cert(ca, "client", dc=dc)
            (tls / f"{dc}-client-consul-{k - 1}.pem").write_bytes(cert.cert_pem)
            (tls / f"{dc}-client-consul-{k - 1}-key.pem").write_bytes(cert.key_pem)


def _agent_lines(root: Path, dc: str, node: str, ip: str, cert: str) -> list[str]:
    tls = root / dc / "tls"
    return [
        f'datacenter = "{dc}"',
        'primary_datacenter = "primary"',
        f'node_name = "{node}"',
        f'bind_addr = "{ip}"',
        f'advertise_addr = "{ip}"',
        f'client_addr = "{ip}"',
        f'data_dir = "{root / dc / node / "data"}"',
        f'ca_file = "{tls / "consul-agent-ca.pem"}"',
        f'cert_file = "{tls / f"{cert}.pem"}"',
        f'key_file = "{tls / f"{cert}-key.pem"}"',
        "verify_outgoing = true",
        "verify_server_hostname = true",
    ]


def write_configs(root: Path, layout: Layout) -> dict[str, list[Path]]:
    """One config file per agent (``<dir>/<dc>/<node>/agent.hcl``); servers first."""
    out: dict[str, list[Path]] = {}
    for dc in layout.dcs:
        servers = [layout.server_ip(dc, i) for i in range(1, layout.servers + 1)]
        join = "retry_join = [" + ", ".join(f'"{ip}"' for ip in servers) + "]"
        files: list[Path] = []
        for i in range(1, layout.servers + 1):
            node = layout.server_node(dc, i)
            lines = _agent_lines(root, dc, node, servers[i - 1], f"{dc}-server-consul-{i - 1}")
            lines += [
                "server = true",
                f"bootstrap_expect = {layout.servers}",
                join,
                'retry_interval = "1s"',
                "verify_incoming = true",
                "connect {",
                "  enabled = true",
                "  enable_mesh_gateway_wan_federation = true",
                "}",
                # The demo's fast raft timing (as -dev): a lost leader is replaced in seconds.
                "performance { raft_multiplier = 1 }",
            ]
            if dc != layout.dcs[0]:
                gws = ", ".join(
                    f'"{layout.gateway_addr(layout.dcs[0], g)}"'
                    for g in range(1, layout.gateways + 1)
                )
                lines += [
                    f"primary_gateways = [{gws}]",
                    'primary_gateways_interval = "5s"',
                    'retry_interval_wan = "3s"',
                ]
            files.append(_write(root / dc / node / "agent.hcl", lines))
        for k in range(1, layout.clients + 1):
            node = layout.client_node(dc, k)
            ip = layout.client_ip(dc, k)
            lines = _agent_lines(root, dc, node, ip, f"{dc}-client-consul-{k - 1}")
            lines += ["server = false", join, 'retry_interval = "1s"']
            files.append(_write(root / dc / node / "agent.hcl", lines))
        out[dc] = files
    return out


def _answers(url: str) -> bool:
    return _get(url)[0] == 200


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    """One process of the demo: its name, log and Popen."""

    def __init__(self, name: str, dc: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.dc = dc
        self.log = log
        self.proc = proc


class ProductionFederation:
    """Servers, client agents and registered gateways of every datacenter (see the module's
    docstring): write the files, start the processes, check, stop."""

    def __init__(
        self,
        root: Path,
        ips: dict[str, str],
        servers: int,
        clients: int,
        prefix: dict[str, list[str]] | None = None,
    ) -> None:
        """``ips``: an address of each datacenter (the primary first), whose /24 holds its
        agents (loopback for the demo, a network namespace's addresses in the netns test).
        ``prefix`` puts a command before each datacenter's processes (``ip netns exec``)."""
        self.root = root
        self.layout = Layout(ips, servers, clients)
        self.dcs = self.layout.dcs
        self.prefix = prefix or {dc: [] for dc in self.dcs}
        self.agents: list[Process] = []
        self.gateways: list[Process] = []
        lay = self.layout
        self.http = {dc: lay.server_http(dc, 1) for dc in self.dcs}
        self.client_http = {dc: lay.client_http(dc, 1) for dc in self.dcs}
        self.admin = {dc: f"http://{lay.admin_addr(dc, 1)}" for dc in self.dcs}
        self.admins = {
            dc: [f"http://{lay.admin_addr(dc, g)}" for g in range(1, lay.gateways + 1)]
            for dc in self.dcs
        }

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [p.proc for p in self.agents + self.gateways]

    @property
    def processes(self) -> list[Process]:
        return self.agents + self.gateways

    def start(self, say: Callable[[str], object] = print) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lay = self.layout
        _write_tls(self.root, lay)
        configs = write_configs(self.root, lay)
        wanfed = [sys.executable, "-m", "wanfedtx.cli.main"]
        for dc in self.dcs:
            for path in configs[dc]:
                node = path.parent.name
                log = path.parent / "agent.log"
                cmd = [*wanfed, "agent", "-config-file", str(path)]
                self.agents.append(Process(node, dc, log, _start([*self.prefix[dc], *cmd], log)))
                say(f"  started {node} of {dc}: wanfed agent -config-file {path}")
        for dc in self.dcs:
            for g in range(1, lay.gateways + 1):
                # The gateway registers itself through its client agent: wait for its HTTP
                # API (a gateway that cannot register exits, and the checks show its log).
                http = f"{lay.client_http(dc, g)}/v1/agent/self"
                poll_until(functools.partial(_answers, http), 30)
                flags = lay.gateway_command(dc, g)
                log = self.root / dc / f"gateway{g}.log"
                self.gateways.append(
                    Process(f"gateway{g}", dc, log,
                            _start([*self.prefix[dc], *wanfed, *flags], log))
                )
                say(f"  started mesh gateway {g} of {dc}: wanfed {' '.join(flags)}")

    def checks(self) -> Checks:
        return ProductionChecks(self)

    def stop(self) -> None:
        """Clients and servers first (their graceful leave still crosses the gateways), then
        the gateways (which deregister through their client agents: already gone, so they
        just stop)."""
        for group in (self.agents, self.gateways):
            for p in group:
                if p.proc.poll() is None:
                    p.proc.terminate()
            for p in group:
                try:
                    p.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait()

    def tails(self, dcs: set[str], lines: int = 15) -> str:
        """The last ``lines`` of each log of the processes that exited, else of every
        process of ``dcs`` (the datacenters whose checks failed)."""
        exited = [p for p in self.processes if p.proc.poll() is not None]
        chosen = exited or [p for p in self.processes if p.dc in dcs]
        out = []
        for p in chosen:
            try:
                text = p.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            state = "" if p.proc.poll() is None else f", exited {p.proc.returncode}"
            out.append(f"--- {p.dc} {p.name} ({p.log}{state})")
            out += [f"    {line}" for line in text]
        return "\n".join(out)


class ProductionChecks(Checks):
    """``case-wanfed-gw``'s checks for every gateway and all servers, plus a KV write through
    a client agent with ``?dc=`` read back (``?consistent``) in the other datacenter."""

    def __init__(self, fed: ProductionFederation) -> None:
        super().__init__(fed.http, fed.admin, admins=fed.admins, servers=fed.layout.servers)
        self.client_http = fed.client_http

    def all(self) -> list[tuple[str, Callable[[], bool]]]:
        out = super().all()
        for dc in self.dcs:
            for other in self.dcs:
                if other != dc:
                    name = (
                        f"{dc}: KV write through client agent with ?dc={other}"
                        f" lands in {other}"
                    )
                    out.append((name, functools.partial(self._via_client, dc, other)))
        return out

    def _via_client(self, dc: str, other: str) -> bool:
        key = f"via-client/{dc}-to-{other}"
        value = f"from a client agent of {dc}".encode()
        if _put(f"{self.client_http[dc]}/v1/kv/{key}?dc={other}", value)[0] != 200:
            return False
        code, body = _get(f"{self.http[other]}/v1/kv/{key}?consistent")
        if code != 200 or not isinstance(body, list) or not body:
            return False
        import base64

        return bool(base64.b64decode(body[0].get("Value") or "") == value)
