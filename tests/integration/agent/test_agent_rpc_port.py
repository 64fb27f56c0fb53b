"""A server agent serves its endpoints on the RPC port: plain rpc-multi, and native TLS with
ALPN ``consul/rpc-multi`` when the agent has a CA and a server certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from agent_support import http_on_port_zero
from netutil import free_port

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load
from wanfedtx.rpc.constants import ALPN_RPC_MULTIPLEX_V2, RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.protocol import RPCClientProtocol
from wanfedtx.tls.certs import create_ca, create_cert
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings


def _write_pki(tmp: Path) -> dict[str, str]:
    ca = create_ca()
    srv = create_cert(ca, "server", dc="dc1", node="s1")
    files = {
        "ca_file": tmp / "ca.pem",
        "cert_file": tmp / "s1.pem",
        "key_file": tmp / "s1-key.pem",
    }
    files["ca_file"].write_bytes(ca.cert_pem)
    files["cert_file"].write_bytes(srv.cert_pem)
    files["key_file"].write_bytes(srv.key_pem)
    return {k: str(v) for k, v in files.items()}


def _server_config(tmp: Path, pki: dict[str, str]) -> Any:
    hcl = tmp / "server.hcl"
    lines = [
        'datacenter = "dc1"',
        'node_name = "s1"',
        "server = true",
        'bind_addr = "127.0.0.1"',
        'client_addr = "127.0.0.1"',
        f'data_dir = "{tmp / "data"}"',
        f"ports {{ server = {free_port()} dns = -1 "
        f"serf_lan = {free_port()} serf_wan = {free_port()} }}",
    ]
    lines += [f'{k} = "{v}"' for k, v in pki.items()]
    hcl.write_text("\n".join(lines) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


@pytest_twisted.ensureDeferred
async def test_server_agent_answers_rpc_in_plain_and_native_tls(
    reactor: Any, tmp_path: Path
) -> None:
    pki = _write_pki(tmp_path)
    agent = Agent(_server_config(tmp_path, pki), reactor)
    agent.startService()
    try:
        assert agent.server_port is not None
        port = await agent.server_port.service.when_listening()
        addr = f"127.0.0.1:{port.getHost().port}"

        plain = RPCClientProtocol(multi=True)
        dialer = Dialer(reactor, "dc1", server=True, tls=None, timeout=5.0)
        await dialer.dial_directly("dc1", "s1", addr, RPCType.MULTIPLEX_V2, False, plain)
        assert await plain.call("Status.Ping", {}) is None
        reply = await plain.call("Catalog.ListDatacenters", {})
        assert reply == ["dc1"]
        plain.transport.loseConnection()  # type: ignore[union-attr]

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
        native = RPCClientProtocol(multi=True)
        secure = Dialer(reactor, "dc1", server=True, tls=tls, timeout=5.0)
        await secure.dial_alpn(addr, "dc1", "s1", ALPN_RPC_MULTIPLEX_V2, native)
        assert await native.call("Status.Ping", {}) is None
        native.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        await agent.stop()

