# -*- test-case-name: tests.security.test_security_rpc_matrix -*-
"""Building a ``RaftService`` on the :8300 port from plain parameters (no config object).

``raft_on_rpc_port`` registers the raft handler (type byte 1 and ALPN ``consul/raft``) in the RPC
port's ``HandlerRegistry`` and dials peers with the RPC ``Dialer``: legacy TLS (outer type 3 +
inner type 1) when the dialer's TLS configurator has outgoing TLS enabled, plain type 1 otherwise.
Peers are ``host:port`` server addresses (``retry_join`` entries resolved to the server port);
``node_names`` maps them to node names for TLS server-name checks when known. With
``native_tls`` peers are dialed with native TLS and ALPN ``consul/raft`` (SNI
``<node>.server.<dc>.<domain>``, so every peer's node name must be in ``node_names``).

With ``source_check`` (given when the RPC port enforces server identity: ``verify_incoming`` and
``verify_server_hostname``) every inbound raft message is vetted against the certificate's node
name; ``ServerSourceCheck`` is the check: the node must be a server of this datacenter whose raft
address is the message's ``src``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol

from wanfedtx.hostport import normalize_host_port
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.raft.core import RaftOptions
from wanfedtx.raft.interfaces import IRaftFSM
from wanfedtx.raft.service import RaftService
from wanfedtx.raft.transport import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_PARTIAL_BUDGET,
    RaftHandler,
    StreamTransport,
    max_frame_for,
)
from wanfedtx.reactors import ReactorLike
from wanfedtx.rpc.constants import ALPN_RPC_RAFT, RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.interfaces import SourceCheck
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.tls.server_identity import WILDCARD_NODE

ServerLister = Callable[[], Iterable[tuple[str, str]]]
"""``() -> [(node name, "host:port" raft address), ...]``: this datacenter's servers now."""


normalize_addr = normalize_host_port  # one spelling of host:port (wanfedtx.hostport)


class ServerSourceCheck:
    """``SourceCheck`` under server identity: ``peer_node`` must name a server of this DC whose
    raft address equals the message's ``src``.

    Servers come from ``servers()`` (the LAN gossip members with ``role=consul``, ``dc`` of this
    datacenter and an RPC ``port`` tag) and from ``static`` (``addr -> node``, e.g.
    ``raft_on_rpc_port``'s ``node_names``). A wildcard node certificate (``*``) may send from any
    known server address of this DC. An unknown node or address is refused: the sender's
    transport reconnects, and gossip usually knows the server by then.
    """

    def __init__(self, servers: ServerLister | None = None,
                 static: Mapping[str, str] | None = None) -> None:
        self._servers = servers
        self._static = dict(static or {})

    def known(self) -> dict[str, set[str]]:
        """Normalized raft address -> the node names claiming it."""
        out: dict[str, set[str]] = {}
        for addr, node in self._static.items():
            out.setdefault(normalize_addr(addr), set()).add(node.lower())
        if self._servers is not None:
            for node, addr in self._servers():
                out.setdefault(normalize_addr(addr), set()).add(node.lower())
        return out

    def __call__(self, peer_node: str | None, src: str) -> str | None:
        if not peer_node:
            return "the connection has no verified server identity"
        nodes = self.known().get(normalize_addr(src))
        if nodes is None:
            return f"{src!r} is not the raft address of a known server of this datacenter"
        if peer_node == WILDCARD_NODE or peer_node.lower() in nodes:
            return None
        return (f"the certificate names node {peer_node!r} but {src!r} is the raft address of "
                f"{', '.join(sorted(nodes))}")


def raft_on_rpc_port(
    *,
    advertise: str,
    data_dir: str,
    fsm: IRaftFSM,
    registry: HandlerRegistry,
    dialer: Dialer,
    reactor: ReactorLike,
    peers: Sequence[str] = (),
    bootstrap_expect: int = 0,
    node_names: Mapping[str, str] | None = None,
    options: RaftOptions | None = None,
    snapshot_threshold: int = 8192,
    trailing_logs: int = 10240,
    rng: random.Random | None = None,
    metrics: Registry = REGISTRY,
    native_tls: bool = False,
    source_check: SourceCheck | None = None,
    partial_frame_budget: int = DEFAULT_PARTIAL_BUDGET,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
) -> RaftService:
    """A ``RaftService`` for the server reachable at ``advertise`` (``host:port`` of :8300)."""
    existing = registry.for_type(RPCType.RAFT)
    if isinstance(existing, RaftHandler):
        handler = existing  # a restarted service on the same port
        handler.source_check = source_check
    else:
        opts = options or RaftOptions()
        handler = RaftHandler(
            source_check=source_check, clock=reactor, metrics=metrics,
            max_frame=max_frame_for(opts.max_entry_bytes, opts.snapshot_chunk_size),
            partial_budget=partial_frame_budget, frame_timeout=frame_timeout)
        registry.register(RPCType.RAFT, handler)
    names = dict(node_names or {})

    def dial(addr: str, proto: IProtocol) -> Deferred[Any]:
        if native_tls:  # TLS first, ALPN consul/raft, SNI <node>.server.<dc>.<domain>
            return dialer.dial_alpn(addr, dialer.datacenter, names.get(addr, ""),
                                    ALPN_RPC_RAFT, proto)
        tls = dialer.tls is not None and dialer.tls.outgoing_tls_enabled()
        return dialer.dial_directly(dialer.datacenter, names.get(addr, ""), addr, RPCType.RAFT,
                                    tls, proto)

    return RaftService(
        node_id=advertise,
        data_dir=data_dir,
        fsm=fsm,
        transport=StreamTransport(reactor, dial, handler),
        reactor=reactor,
        peers=peers,
        bootstrap_expect=bootstrap_expect,
        options=options,
        rng=rng,
        snapshot_threshold=snapshot_threshold,
        trailing_logs=trailing_logs,
        metrics=metrics,
    )
