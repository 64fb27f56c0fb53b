"""``wanfed gateway -proxy-id``: routes from the local agent, end to end.

A real server agent (raft, TLS on its RPC port) registers a mesh-gateway service with the
``consul-wan-federation`` meta; the gateway process watches the agent, builds the wanfed
snapshot (``server.<dc>.consul`` and ``<node>.server.<dc>.consul`` to the agent's RPC port) and
an RPC with ALPN ``consul/rpc-multi`` dialed at the gateway with the server's SNI reaches the
agent and is answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_support import http_on_port_zero
from netutil import free_port, wait_for_lines
from twisted.internet import task, threads

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.rpc.constants import ALPN_RPC_MULTIPLEX_V2
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.protocol import RPCClientProtocol
from wanfedtx.tls.certs import create_ca, create_cert
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings

pytestmark = pytest.mark.integration


def _config(tmp: Path, gw_port: int) -> tuple[Any, dict[str, str]]:
    ca = create_ca()
    srv = create_cert(ca, "server", dc="dc1", node="s1")
    files = {"ca_file": tmp / "ca.pem", "cert_file": tmp / "s1.pem", "key_file": tmp / "s1-key.pem"}
    files["ca_file"].write_bytes(ca.cert_pem)
    files["cert_file"].write_bytes(srv.cert_pem)
    files["key_file"].write_bytes(srv.key_pem)
    pki = {k: str(v) for k, v in files.items()}
    hcl = tmp / "server.hcl"
    lines = [
        'datacenter = "dc1"',
        'primary_datacenter = "dc1"',
        'node_name = "s1"',
        "server = true",
        "bootstrap_expect = 1",
        'bind_addr = "127.0.0.1"',
        'client_addr = "127.0.0.1"',
        f'data_dir = "{tmp / "data"}"',
        f"ports {{ server = {free_port()} dns = -1 "
        f"serf_lan = {free_port()} serf_wan = {free_port()} }}",
        "connect { enabled = true }",
        f'services {{ name = "mesh-gateway" id = "mesh-gateway" kind = "mesh-gateway" '
        f'address = "127.0.0.1" port = {gw_port} meta {{ consul-wan-federation = "1" }} }}',
    ]
    lines += [f'{k} = "{v}"' for k, v in pki.items()]
    hcl.write_text("\n".join(lines) + "\n")
    # HTTP on port 0 (read back with Agent.http_urls()); the other ports must be known first.
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime), pki


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


async def _poll(reactor: Any, fn: Any, what: str, seconds: float = 30.0) -> Any:
    deadline = reactor.seconds() + seconds
    last: Exception | None = None
    while reactor.seconds() < deadline:
        try:
            out = await threads.deferToThread(fn)
            if out:
                return out
        except OSError as e:
            last = e
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"{what}: not seen in time (last error {last})")


@pytest_twisted.ensureDeferred
async def test_gateway_routes_from_agent_reach_the_server(reactor: Any, tmp_path: Path) -> None:
    gw_port = free_port()  # the registered port: the gateway learns where to listen from it
    rt, pki = _config(tmp_path, gw_port)
    agent = Agent(rt, reactor)
    agent.startService()
    exe = Path(sys.executable).parent / "wanfed"
    (http,) = agent.http_urls()
    proc = subprocess.Popen(
        [
            str(exe),
            "gateway",
            "-proxy-id",
            "mesh-gateway",
            "-http-addr",
            http,
            "-admin-bind",
            "127.0.0.1:0",
            "-data-path",
            "twisted",
            "-log-level",
            "info",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The admin API listens once the agent's watches gave valid inputs, on a port the kernel
        # chose; the gateway logs it.
        (admin_line,), started = await threads.deferToThread(
            wait_for_lines, proc, proc.stderr, r"admin address: 127\.0\.0\.1:(\d+)$"
        )
        admin = int(admin_line.group(1))
        assert admin != 0 and "Traceback" not in started
        assert agent.server_port is not None
        port = await agent.server_port.service.when_listening()
        server_port = port.getHost().port

        def clusters() -> dict[str, Any]:
            dump = _get(f"http://127.0.0.1:{admin}/config_dump")
            return {e["cluster_name"]: e["endpoints"] for e in dump["endpoints"]}

        def server_routed() -> bool:
            eps = clusters().get("s1.server.dc1.consul") or []
            return any(e["port"] == server_port for e in eps)

        await _poll(reactor, server_routed, "cluster s1.server.dc1.consul -> the RPC port")
        assert set(clusters()) >= {"server.dc1.consul", "s1.server.dc1.consul"}

        tls = TLSConfigurator(
            TLSSettings(
                ca_file=pki["ca_file"],
                cert_file=pki["cert_file"],
                key_file=pki["key_file"],
                domain="consul",
                node_name="s1",
                datacenter="dc1",
            )
        )
        rpc = RPCClientProtocol(multi=True)
        dialer = Dialer(reactor, "dc1", server=True, tls=tls, timeout=5.0)
        await dialer.dial_alpn(f"127.0.0.1:{gw_port}", "dc1", "s1", ALPN_RPC_MULTIPLEX_V2, rpc)
        assert await rpc.call("Catalog.ListDatacenters", {}) == ["dc1"]
        rpc.transport.loseConnection()  # type: ignore[union-attr]
        stats = await threads.deferToThread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5).read()
        )
        assert b"cluster.s1.server.dc1.consul.upstream_cx_total: 1" in stats
    finally:
        proc.terminate()
        _out, err = await threads.deferToThread(proc.communicate, None, 20)
        await agent.stop()
    assert proc.returncode == 0, err.decode()
