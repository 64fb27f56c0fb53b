# -*- test-case-name: tests.e2e.test_e2e_demo_case_wanfed_gw -*-
"""``wanfed demo``: two datacenters federated through mesh gateways, on this machine's loopback.

The ``case-wanfed-gw`` scenario of the reference: datacenters ``primary`` and
``secondary``, one server each (``-dev``, TLS with verify_incoming/outgoing/server_hostname,
``connect.enable_mesh_gateway_wan_federation``), each with a mesh gateway registered with the
``consul-wan-federation`` meta and run as ``wanfed gateway -proxy-id mesh-gateway``. The
secondary knows only ``primary_gateways``. Each datacenter gets its own loopback address
(127.0.1.1 and 127.0.2.1 by default) with Consul's default ports, so the servers never share a
port: the only way between them is through the gateways.

The demo writes the TLS material and config files into a directory, starts the four processes
(logs beside them), waits for the reference's checks (the WAN pool shows two alive servers in
each datacenter, each gateway has a healthy endpoint for the other datacenter, a KV write
crosses in each direction), prints what to look at, and runs until interrupted (or exits after
the checks with ``-check``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanfedtx.cli.interrupt import stop_on_ctrl_c
from wanfedtx.cli.main import UsageError

if TYPE_CHECKING:
    from wanfedtx.cli.demo_acl import DemoACL
    from wanfedtx.cli.demo_topology import ProductionFederation

HELP = "Run two datacenters federated through mesh gateways on loopback (case-wanfed-gw)."

DCS = ("primary", "secondary")
# A third datacenter for tests that need two secondaries (secondary -> secondary is two hops).
NODES = {"primary": "pri", "secondary": "sec", "tertiary": "ter"}
GATEWAY_PORTS = {"primary": 4431, "secondary": 4432, "tertiary": 4433}
ADMIN_PORTS = {"primary": 19000, "secondary": 19001, "tertiary": 19002}


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("-dir", "--dir", default=None, help="where to write configs, TLS files and logs"
      " (default: a new temporary directory)")
    a("-primary-ip", "--primary-ip", default="127.0.1.1", help="loopback address of the primary")
    a(
        "-secondary-ip",
        "--secondary-ip",
        default="127.0.2.1",
        help="loopback address of the secondary",
    )
    a("-timeout", "--timeout", type=float, default=90.0, help="seconds to wait for the checks")
    a("-check", "--check", action="store_true", help="exit after the checks (0 if all passed)")
    a("-servers", "--servers", type=int, default=1, help="servers per datacenter (default 1:"
      " one -dev server; more: bootstrap_expect servers, client agents, two gateways)")
    a("-clients", "--clients", type=int, default=0, help="client agents per datacenter; the"
      " gateways register through them (at least 2 with -servers > 1)")
    a("-acl", "--acl", action="store_true", help="ACLs on with default_policy deny: bootstrap,"
      " replication and agent tokens, least-privilege gateway tokens (one-server layout)")


def _write_tls(root: Path, dcs: tuple[str, ...] = DCS) -> None:
    from wanfedtx.tls.certs import create_ca, create_cert

    ca = create_ca()
    for dc in dcs:
        tls = root / dc / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        cert = create_cert(ca, "server", dc=dc, node=NODES[dc])
        (tls / "consul-agent-ca.pem").write_bytes(ca.cert_pem)
        (tls / f"{dc}-server-consul-0.pem").write_bytes(cert.cert_pem)
        (tls / f"{dc}-server-consul-0-key.pem").write_bytes(cert.key_pem)


def _write_config(root: Path, dc: str, ips: dict[str, str]) -> Path:
    d = root / dc / "consul"
    d.mkdir(parents=True, exist_ok=True)
    tls = root / dc / "tls"
    ip = ips[dc]
    (d / "base.hcl").write_text('primary_datacenter = "primary"\n')
    (d / "bind.hcl").write_text(
        f'bind_addr = "{ip}"\nadvertise_addr = "{ip}"\nclient_addr = "{ip}"\n'
    )
    server = [
        f'node_name = "{NODES[dc]}"',
        "connect {",
        "  enabled = true",
        "  enable_mesh_gateway_wan_federation = true",
        "}",
        f'ca_file = "{tls / "consul-agent-ca.pem"}"',
        f'cert_file = "{tls / f"{dc}-server-consul-0.pem"}"',
        f'key_file = "{tls / f"{dc}-server-consul-0-key.pem"}"',
        "verify_incoming = true",
        "verify_outgoing = true",
        "verify_server_hostname = true",
    ]
    if dc != "primary":
        server += [
            f'primary_gateways = ["{ips["primary"]}:{GATEWAY_PORTS["primary"]}"]',
            'primary_gateways_interval = "5s"',
            # The gateways start after the servers: retry the WAN join sooner than the
            # default 30 s so the demo comes up quickly.
            'retry_interval_wan = "3s"',
        ]
    (d / "server.hcl").write_text("\n".join(server) + "\n")
    (d / "gateway.hcl").write_text(
        "services {\n"
        '  name = "mesh-gateway"\n'
        '  kind = "mesh-gateway"\n'
        # The gateway binds this address (the registration's default bind), not 0.0.0.0.
        f'  address = "{ip}"\n'
        f"  port = {GATEWAY_PORTS[dc]}\n"
        '  meta { consul-wan-federation = "1" }\n'
        "}\n"
    )
    return d


class DemoHTTP:
    """The opener of the demo's own requests (its checks). With ``-acl`` it adds the management
    token; it is the demo's, never urllib's process-wide opener, so nothing else in the process
    (a test runner, say) starts sending the demo's token."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener()

    def use_token(self, token: str) -> None:
        """Send ``X-Consul-Token: token`` with every demo request ("" for none)."""
        if not token:
            self.opener = urllib.request.build_opener()
            return
        from wanfedtx.cli.demo_acl import TokenHeader

        self.opener = urllib.request.build_opener(TokenHeader(token))

    def open(self, req: str | urllib.request.Request, timeout: float) -> Any:
        return self.opener.open(req, timeout=timeout)


DEMO_HTTP = DemoHTTP()


def _status(url: str) -> int:
    try:
        with DEMO_HTTP.open(url, timeout=5) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _get(url: str) -> tuple[int, Any]:
    try:
        with DEMO_HTTP.open(url, timeout=5) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        return 0, str(e)


def _put(url: str, data: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method="PUT")
    try:
        with DEMO_HTTP.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, str(e)


def _alive_wan(http: str) -> int:
    code, members = _get(f"{http}/v1/agent/members?wan=1")
    if code != 200 or not isinstance(members, list):
        return 0
    return sum(1 for m in members if m.get("Status") == 1)


def _trust_domain(http: str) -> str:
    """The trust domain of the datacenter's Connect CA roots ("" before the CA is ready)."""
    code, roots = _get(f"{http}/v1/connect/ca/roots")
    if code != 200 or not isinstance(roots, dict) or not roots.get("Roots"):
        return ""
    return str(roots.get("TrustDomain") or "")


def _healthy_endpoints(admin: str, name: str) -> int:
    code, data = _get(f"{admin}/clusters?format=json")
    if code != 200 or not isinstance(data, dict):
        return 0
    n = 0
    for cluster in data.get("cluster_statuses", []):
        if cluster.get("name", "") == name:
            for host in cluster.get("host_statuses", []):
                if host.get("health_status", {}).get("eds_health_status") == "HEALTHY":
                    n += 1
    return n


class Checks:
    """The reference's bats assertions, for both datacenters."""

    def __init__(
        self,
        http: dict[str, str],
        admin: dict[str, str],
        *,
        admins: dict[str, list[str]] | None = None,
        servers: int = 1,
    ) -> None:
        self.http = http
        self.admin = admin
        # Every gateway of each datacenter (the production layout runs two); the first is
        # ``admin[dc]``.
        self.admins = admins or {dc: [url] for dc, url in admin.items()}
        self.servers = servers
        self.dcs = tuple(http)
        #: "<dc> -> <other>": the gateway cluster found healthy (``<other>.internal.<td>``)
        self.clusters: dict[str, str] = {}

    def all(self) -> list[tuple[str, Callable[[], bool]]]:
        out: list[tuple[str, Callable[[], bool]]] = []
        for dc in self.dcs:
            out += self._for(dc, [other for other in self.dcs if other != dc])
        return out

    def _for(self, dc: str, others: list[str]) -> list[tuple[str, Callable[[], bool]]]:
        http, admins = self.http[dc], self.admins[dc]
        n = len(self.dcs) * self.servers

        def admin_up(admin: str) -> bool:
            return _status(f"{admin}/stats") == 200

        def wan() -> bool:
            return _alive_wan(http) == n

        out: list[tuple[str, Callable[[], bool]]] = []
        for i, admin in enumerate(admins):
            which = "gateway" if len(admins) == 1 else f"gateway {i + 1}"
            out.append((f"{dc}: {which} admin is up", functools.partial(admin_up, admin)))
        for other in others:
            # The reference's keys for its two datacenters; <dc>-to-<other> beyond them.
            key, value = {
                ("primary", "secondary"): ("foo", b'{"Value":"bar"}'),
                ("secondary", "primary"): ("oof", b'{"Value":"rab"}'),
            }.get((dc, other), (f"{dc}-to-{other}", b"1"))

            def healthy(admin: str, other: str = other) -> bool:
                td = _trust_domain(http)
                name = f"{other}.internal.{td}"
                if not td or _healthy_endpoints(admin, name) != len(self.admins[other]):
                    return False
                self.clusters[f"{dc} -> {other}"] = name
                return True

            def rpc(key: str = key, value: bytes = value, other: str = other) -> bool:
                return _put(f"{http}/v1/kv/{key}?dc={other}", value)[0] == 200

            for i, admin in enumerate(admins):
                which = "gateway" if len(admins) == 1 else f"gateway {i + 1}"
                many = "a healthy endpoint" if len(self.admins[other]) == 1 else (
                    f"{len(self.admins[other])} healthy endpoints"
                )
                out.append((
                    f"{dc}: {which} has {many} for {other}",
                    functools.partial(healthy, admin, other),
                ))
            out.append((f"{dc}: RPC to {other} (PUT /v1/kv/{key}?dc={other})", rpc))
        primary_http = self.http[self.dcs[0]]

        def same_trust_domain() -> bool:
            td = _trust_domain(http)
            return bool(td) and td == _trust_domain(primary_http)

        out.append((f"{dc}: WAN pool shows {n} alive servers", wan))
        out.append((f"{dc}: Connect CA roots name the primary's trust domain", same_trust_domain))
        return out


def poll_until(check: Callable[[], bool], seconds: float, interval: float = 0.25) -> bool:
    """Call ``check`` every ``interval`` until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    f = log.open("wb")
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


class Federation:
    """The scenario's processes (a server and a gateway per datacenter): write the files,
    start them, stop them. ``ips`` names the datacenters, the primary first.

    ``prefix`` puts a command before each datacenter's processes (the netns test runs each
    datacenter in its own network namespace with ``ip netns exec``).
    """

    def __init__(
        self,
        root: Path,
        ips: dict[str, str],
        prefix: dict[str, list[str]] | None = None,
        acl: DemoACL | None = None,
    ) -> None:
        self.acl = acl  # ``-acl``: wanfedtx.cli.demo_acl
        self.root = root
        self.ips = ips
        self.dcs = tuple(ips)  # primary first
        self.prefix = prefix or {dc: [] for dc in self.dcs}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http = {dc: f"http://{ips[dc]}:8500" for dc in self.dcs}
        self.admin = {dc: f"http://{ips[dc]}:{ADMIN_PORTS[dc]}" for dc in self.dcs}

    def start(self, say: Callable[[str], object] = print) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_tls(self.root, self.dcs)
        wanfed = [sys.executable, "-m", "wanfedtx.cli.main"]
        for dc in self.dcs:
            conf = _write_config(self.root, dc, self.ips)
            if self.acl is not None:
                self.acl.write_config(conf, dc)
            cmd = [*wanfed, "agent", "-dev", "-datacenter", dc, "-config-dir", str(conf)]
            self.procs.append(_start([*self.prefix[dc], *cmd], self.root / dc / "agent.log"))
            say(f"  started server {NODES[dc]} of {dc} on {self.ips[dc]} (HTTP {self.http[dc]})")
        for dc in self.dcs:
            cmd = [
                *wanfed,
                "gateway",
                "-proxy-id",
                "mesh-gateway",
                "-http-addr",
                f"{self.ips[dc]}:8500",
                "-admin-bind",
                f"{self.ips[dc]}:{ADMIN_PORTS[dc]}",
                *(self.acl.gateway_args(dc) if self.acl is not None else []),
            ]
            self.procs.append(_start([*self.prefix[dc], *cmd], self.root / dc / "gateway.log"))
            say(
                f"  started mesh gateway of {dc} on {self.ips[dc]}:{GATEWAY_PORTS[dc]}"
                f" (admin {self.admin[dc]})"
            )

    def checks(self) -> Checks:
        if self.acl is not None:
            from wanfedtx.cli.demo_acl import with_acl_checks

            return with_acl_checks(Checks(self.http, self.admin), self.acl)
        return Checks(self.http, self.admin)

    def wait(self, timeout: float) -> bool:
        return not _wait_for_checks(self.checks(), self.procs, timeout)

    def stop(self) -> None:
        """Servers first (their graceful WAN leave still crosses the gateways), then gateways."""
        DEMO_HTTP.use_token("")
        n = len(self.dcs)
        for group in (self.procs[:n], self.procs[n:]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            for p in group:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def run(args: argparse.Namespace) -> int:
    ips = {"primary": args.primary_ip, "secondary": args.secondary_ip}
    for ip in ips.values():
        if not ip.startswith("127."):
            raise UsageError("the demo runs on loopback: -primary-ip/-secondary-ip must be 127.x")
    if not 1 <= args.servers <= 9 or not 0 <= args.clients <= 9:
        raise UsageError("-servers must be 1 to 9 and -clients 0 to 9")
    production = args.servers > 1 or args.clients > 0
    if production and args.clients < (2 if args.servers > 1 else 1):
        raise UsageError(
            "each gateway runs beside its own client agent: -clients must be at least"
            f" {2 if args.servers > 1 else 1} with -servers {args.servers}"
        )
    if production and args.acl:
        raise UsageError("-acl runs the one-server layout (-servers 1 -clients 0)")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="wanfed-demo-"))
    fed: Federation | ProductionFederation
    acl: DemoACL | None = None
    if args.acl:
        from wanfedtx.cli.demo_acl import DemoACL

        acl = DemoACL({dc: NODES[dc] for dc in ips})
    if production:
        from wanfedtx.cli.demo_topology import ProductionFederation

        fed = ProductionFederation(root, ips, args.servers, args.clients)
    else:
        fed = Federation(root, ips, acl=acl)
    keep = bool(args.dir) or os.environ.get("WANFED_DEMO_KEEP") == "1"
    print(f"wanfed demo: files and logs in {root}")
    # Ctrl-C and SIGTERM stop the demo and its processes, even when started with SIGINT
    # ignored (a background job of a non-interactive shell).
    stop_on_ctrl_c()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fed.start()
        alive = lambda: all(p.poll() is None for p in fed.procs)  # noqa: E731
        if acl is not None and not acl.bootstrap(
            fed.http["primary"], poll_until, args.timeout, alive=alive
        ):
            print(_tails(fed, {"primary"}), file=sys.stderr)
            keep = True
            return 1
        checks = fed.checks()
        failed = _wait_for_checks(checks, fed.procs, args.timeout)
        ok = not failed
        if not ok:
            keep = True
            dcs = {dc for dc in checks.dcs if any(name.startswith(f"{dc}:") for name in failed)}
            print(_tails(fed, dcs), file=sys.stderr)
            print(f"wanfed demo: kept {root} for a look", file=sys.stderr)
        _explain(fed.http, fed.admin, root, keep=keep)
        if acl is not None:
            print(f"ACLs are on: add -H 'X-Consul-Token: {acl.management}' to the HTTP requests.")
        if args.check or not ok:
            return 0 if ok else 1
        if not isinstance(fed, Federation):
            print(
                "Running (processes may be killed to watch fail-over); press Ctrl-C to stop.",
                flush=True,
            )
            _watch_exits(fed)
        print("Running; press Ctrl-C to stop.")
        while all(p.poll() is None for p in fed.procs):
            time.sleep(1)
        print("a demo process exited; see the logs above", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        fed.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _tails(fed: Federation | ProductionFederation, dcs: set[str], lines: int = 15) -> str:
    """The last lines of the logs of the processes that exited, else of the failing
    datacenters' processes."""
    if not isinstance(fed, Federation):
        return fed.tails(dcs, lines)
    n = len(fed.dcs)
    agents, gateways = fed.procs[:n], fed.procs[n:]
    logs = [(fed.root / dc / "agent.log", p) for dc, p in zip(fed.dcs, agents, strict=True)]
    logs += [(fed.root / dc / "gateway.log", p) for dc, p in zip(fed.dcs, gateways, strict=True)]
    exited = [(log, p) for log, p in logs if p.poll() is not None]
    chosen = exited or [(log, p) for log, p in logs if log.parent.name in dcs]
    out = []
    for log, p in chosen:
        try:
            text = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        state = "" if p.poll() is None else f", exited {p.returncode}"
        out.append(f"--- {log}{state}")
        out += [f"    {line}" for line in text]
    return "\n".join(out)


def _watch_exits(fed: ProductionFederation) -> None:
    """Say when a process of the production layout exits (killed to watch fail-over) and
    keep running until interrupted."""
    said: set[int] = set()
    while True:
        for p in fed.processes:
            code = p.proc.poll()
            if code is not None and id(p) not in said:
                said.add(id(p))
                print(f"  {p.dc} {p.name} exited ({code}); log: {p.log}", flush=True)
        time.sleep(0.5)


def _wait_for_checks(
    checks: Checks, procs: list[subprocess.Popen[bytes]], timeout: float
) -> list[str]:
    """Run the checks until they all passed or ``timeout``; the names of those that failed."""
    print("checks (the case-wanfed-gw assertions):")
    pending = checks.all()
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while pending and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            print("  a demo process exited early; see its log", file=sys.stderr)
            return [name for name, _ in pending]
        still = []
        for name, check in pending:
            if check():
                print(f"  ok   {name}  ({time.monotonic() - start:.1f}s)")
            else:
                still.append((name, check))
        pending = still
        if pending:
            time.sleep(0.5)
    for name, _ in pending:
        print(f"  FAIL {name}  (not true after {timeout:.0f}s)")
    for route, cluster in sorted(checks.clusters.items()):
        print(f"  gateway cluster {route}: {cluster}")
    return [name for name, _ in pending]


def _explain(http: dict[str, str], admin: dict[str, str], root: Path, keep: bool) -> None:
    p, s = http["primary"], http["secondary"]
    rows = [
        (f"{p}/v1/agent/members?wan=1", "every server as <node>.<dc>, alive"),
        (f"{p}/v1/kv/foo?dc=secondary&raw", "read in the secondary, via the gateways"),
        (f"{s}/v1/catalog/service/consul?dc=primary", "the primary's servers, from the secondary"),
        (f"{p}/v1/internal/federation-states", "each datacenter's mesh gateways"),
        (f"{admin['primary']}/clusters?format=json", "the primary gateway's clusters"),
        (f"{admin['secondary']}/stats", "connections per cluster"),
    ]
    width = max(len(url) for url, _ in rows) + 2
    lines = [f"  curl -s {repr_url(url):<{width}} # {what}" for url, what in rows]
    where = f"  logs: {root}/<dc>/agent.log and gateway.log"
    if (root / "primary" / "gateway1.log").exists():
        where = f"  logs: {root}/<dc>/<node>/agent.log and {root}/<dc>/gateway<N>.log"
    if not keep:
        where += " (removed when the demo ends; -dir keeps them)"
    print(
        "\nWhat to look at (while the demo runs):\n"
        + "\n".join(lines)
        + f"\n{where}\n"
        "The servers share no port across datacenters: RPC and WAN gossip between them went\n"
        "through the gateways (TLS with ALPN, routed by SNI), as the gateway stats show."
    )


def repr_url(url: str) -> str:
    """The URL quoted for a shell."""
    return f"'{url}'"
