"""Building a ``RaftService`` on the :8300 port from plain parameters (no config object).

``raft_on_rpc_port`` registers the raft handler (type byte 1 and ALPN ``consul/raft``) in the RPC
port's ``HandlerRegistry`` and dials peers with the RPC ``Dialer``: legacy TLS (outer type 3 +
inner type 1) when the dialer's TLS configurator has outgoing TLS enabled, plain type 1 otherwise.
Peers are ``host:port`` server addresses (``retry_join`` entries resolved to the server port);
``node_names`` maps them to node names for TLS server-name checks when known. With
``native_tls`` peers are dialed with native TLS and ALPN ``consul/raft`` (SNI
``<node>.server.<dc>.<domain>``, so every peer's node name must be in ``node_names``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol

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
from wanfedtx.rpc.constants import ALPN_RPC_RAFT, RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.registry import HandlerRegistry


def raft_on_rpc_port(
    *,
    advertise: str,
    data_dir: str,
    fsm: IRaftFSM,
    registry: HandlerRegistry,
    dialer: Dialer,
    reactor: Any,
    peers: Sequence[str] = (),
    bootstrap_expect: int = 0,
    node_names: Mapping[str, str] | None = None,
    options: RaftOptions | None = None,
    snapshot_threshold: int = 8192,
    trailing_logs: int = 10240,
    rng: random.Random | None = None,
    metrics: Registry = REGISTRY,
    native_tls: bool = False,
    partial_frame_budget: int = DEFAULT_PARTIAL_BUDGET,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
) -> RaftService:
    """A ``RaftService`` for the server reachable at ``advertise`` (``host:port`` of :8300)."""
    existing = registry.for_type(RPCType.RAFT)
    if isinstance(existing, RaftHandler):
        handler = existing  # a restarted service on the same port
    else:
        opts = options or RaftOptions()
        handler = RaftHandler(
            clock=reactor, metrics=metrics,
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
