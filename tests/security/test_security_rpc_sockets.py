"""The :8300 guards over real sockets and real TLS on 127.0.0.1.

One test per path family (plaintext type byte, type 3 + inner byte, native ALPN) with a refused
and an accepted certificate; the per-client connection limit (127.0.0.1 is cut at the limit while
127.0.0.2 is served); idle connections with a tiny handshake timeout log a bounded number of
lines; three servers with ``verify_incoming`` + ``verify_server_hostname`` still elect a leader
and replicate (raft's per-message source check does not block the cluster's start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_support import elect_and_replicate, fast_serf, http_on_port_zero, until
from netutil import free_port
from rpc_support import RecordingHandler
from test_security_rpc_matrix import client_for
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import globalLogPublisher

from wanfedtx.agent.agent import Agent
from wanfedtx.agent.limits import listen_backlog
from wanfedtx.config import LoadOptions, load
from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import ALPN_RPC_RAFT, RPCType
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.testing.pki import PKI, peer_matrix
from wanfedtx.tls import certs
from wanfedtx.tls.configurator import TLSConfigurator

pytestmark = pytest.mark.integration


class _Holder(Protocol):
    """A raw client connection that records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True


class _Wrap(Protocol):
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = False

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        self.inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.inner.connectionLost(reason)


async def _serve(reactor: Any, tls: TLSConfigurator | None, **kw: Any
                 ) -> tuple[RPCPortService, int, dict[str, RecordingHandler]]:
    reg = HandlerRegistry()
    handlers: dict[str, RecordingHandler] = {}
    for t in (RPCType.CONSUL, RPCType.RAFT, RPCType.MULTIPLEX_V2):
        h = RecordingHandler()
        reg.register(t, h)
        handlers[str(int(t))] = h
    factory = RPCPortFactory(reg, reactor, tls, metrics=Registry(), **kw)
    svc = RPCPortService(
        TCP4ServerEndpoint(reactor, 0, backlog=listen_backlog(), interface="127.0.0.1"), factory)
    svc.startService()
    port = (await svc.when_listening()).getHost().port
    return svc, port, handlers


def _connect(reactor: Any, port: int, proto: Any, source: str = "127.0.0.1") -> None:
    f = ClientFactory()
    f.protocol = lambda: proto  # type: ignore[assignment]
    reactor.connectTCP("127.0.0.1", port, f, bindAddress=(source, 0))


def _held(reactor: Any, port: int, n: int) -> list[_Holder]:
    """``n`` raw connections from 127.0.0.1 that send nothing."""
    held = [_Holder() for _ in range(n)]
    for p in held:
        _connect(reactor, port, p)
    return held


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.mark.parametrize(("path", "cert", "handler", "accepted"), [
    ("plain-0", "none", "0", False),
    ("plain-1", "none", "1", False),
    ("tls3-1", "client", "1", False),
    ("tls3-1", "server", "1", True),
    ("tls3-0", "client", "0", True),
    ("alpn-raft", "server-other-dc", ALPN_RPC_RAFT, False),
    ("alpn-raft", "server-no-node", ALPN_RPC_RAFT, False),
    ("alpn-raft", "server", ALPN_RPC_RAFT, True),
])
@pytest_twisted.ensureDeferred
async def test_path_families_over_real_sockets(reactor: Any, pki: PKI, path: str, cert: str,
                                               handler: str, accepted: bool) -> None:
    tls = TLSConfigurator(pki.settings("dc1", "s1"))
    svc, port, handlers = await _serve(reactor, tls)
    handlers[ALPN_RPC_RAFT] = handlers["1"]
    try:
        client = _Wrap(client_for(pki, peer_matrix(pki)[cert], path, reactor))
        _connect(reactor, port, client)
        h = handlers[handler]
        if accepted:
            await until(reactor, "the handler's bytes",
                         lambda: bool(h.protocols) and h.protocols[0].data == b"hello")
            if handler in ("1", ALPN_RPC_RAFT):
                assert h.infos[0].peer_node == "s2"
        else:
            await until(reactor, "the refused connection to close", lambda: client.closed)
            assert not any(x.protocols for x in handlers.values())
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
async def test_conn_limit_cuts_one_address_while_another_is_served(reactor: Any,
                                                                   pki: PKI) -> None:
    tls = TLSConfigurator(pki.settings("dc1", "s1"))
    svc, port, _ = await _serve(reactor, tls, max_conns_per_client=5, handshake_timeout=60.0)
    try:
        held = _held(reactor, port, 5)
        await until(reactor, "five accepted", lambda: sum(
            svc.factory.per_client.values()) == 5)
        over = _Holder()
        _connect(reactor, port, over)
        await until(reactor, "the sixth connection to be closed", lambda: over.closed)
        other = _Holder()
        _connect(reactor, port, other, source="127.0.0.2")
        await until(reactor, "127.0.0.2 accepted",
                     lambda: svc.factory.per_client.get("127.0.0.2") == 1)
        assert not other.closed and not any(p.closed for p in held)
        assert svc.factory.accept_conn.value(status="rejected") == 1
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
async def test_idle_connections_log_a_bounded_number_of_lines(reactor: Any, pki: PKI) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    tls = TLSConfigurator(pki.settings("dc1", "s1"))
    svc, port, _ = await _serve(reactor, tls, max_conns_per_client=0, handshake_timeout=0.2)
    try:
        idle = _held(reactor, port, 300)
        await until(reactor, "every idle connection closed", lambda: all(p.closed for p in idle))
    finally:
        await svc.stopService()  # writes the pending summary line
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if e.get("log_namespace") == "wanfedtx.rpc"]
    assert 1 < len(lines) <= 11, len(lines)
    assert lines[-1].get("count") == 290 and lines[-1].get("reason") == "first-byte-timeout"


# -- a three-server cluster with verify_incoming + verify_server_hostname ------------------

def _config(tmp: Path, name: str, ip: str, ports: dict[str, int], pki: PKI) -> Any:
    d = tmp / f"{name}-tls"
    d.mkdir()
    pair = certs.create_cert(pki.ca, "server", dc="dc1", node=name, domain=pki.domain,
                             additional_ipaddresses=[ip])
    (d / "ca.pem").write_bytes(pki.ca.cert_pem)
    (d / "cert.pem").write_bytes(pair.cert_pem)
    (d / "key.pem").write_bytes(pair.key_pem)
    hcl = tmp / f"{name}.hcl"
    joins = "" if ip == "127.0.0.1" else '"127.0.0.1"'  # raft learns the rest from gossip
    lines = [
        'datacenter = "dc1"', f'node_name = "{name}"', "server = true",
        f'bind_addr = "{ip}"', f'client_addr = "{ip}"', f'data_dir = "{tmp / name}"',
        f"ports {{ server = {ports['server']} dns = -1 "
        f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
        "bootstrap_expect = 3", f"retry_join = [{joins}]", "performance { raft_multiplier = 1 }",
        f'ca_file = "{d / "ca.pem"}"', f'cert_file = "{d / "cert.pem"}"',
        f'key_file = "{d / "key.pem"}"',
        "verify_incoming = true", "verify_outgoing = true", "verify_server_hostname = true",
    ]
    hcl.write_text("\n".join(lines) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


@pytest_twisted.ensureDeferred
async def test_three_tls_servers_with_server_identity_elect_and_replicate(
    reactor: Any, tmp_path: Path, pki: PKI
) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    agents = [Agent(_config(tmp_path, f"s{i + 1}", ip, ports, pki), reactor,
                    serf_tuning=fast_serf) for i, ip in enumerate(ips)]
    for a in agents:
        assert a.server_port is not None and a.server_port.factory.server_identity_required()
        a.startService()
    try:
        bases = [a.http_urls()[0] for a in agents]
        await elect_and_replicate(reactor, agents, bases, 30.0)
    finally:
        for a in agents:
            if a.running:
                await a.stop()


@pytest.mark.parametrize(("tls", "expected"), [
    ("none", "raft on the RPC port is UNAUTHENTICATED"),
    ("vi-only", "raft on the RPC port accepts ANY certificate signed by the CA"),
    ("vi-vsh", None),
])
@pytest_twisted.ensureDeferred
async def test_server_agent_warns_once_at_start_when_raft_is_not_authenticated(
    reactor: Any, tmp_path: Path, pki: PKI, tls: str, expected: str | None
) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    rt = _config(tmp_path, "s1", "127.0.0.1", ports, pki)
    hcl = tmp_path / "s1.hcl"
    text = hcl.read_text().replace("bootstrap_expect = 3", "bootstrap = true")
    if tls == "none":
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("ca_file", "cert_file", "key_file", "verify_")))
    elif tls == "vi-only":
        text = text.replace("verify_server_hostname = true", "verify_server_hostname = false")
    hcl.write_text(text + "\n")
    rt = http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    agent = Agent(rt, reactor, serf_tuning=fast_serf)
    try:
        agent.startService()
        assert agent.server_port is not None
        await agent.server_port.service.when_listening()
    finally:
        await agent.stop()
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if e.get("log_namespace") == "wanfedtx.rpc"
                and str(e.get("log_format", "")).startswith("raft on the RPC port")]
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0]["log_format"].startswith(expected)
