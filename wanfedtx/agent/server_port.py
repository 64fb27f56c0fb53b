"""The server agent's RPC port (``ports.server``, default 8300), built from ``RuntimeConfig``.

Serves ``consul/rpc-single`` (type 0) and ``consul/rpc-multi`` (type 4) with the endpoint table
of this server: ``Status.Ping`` plus every catalog/health/KV/status endpoint of the
``CatalogAgent``. TLS comes from ``ca_file``/``cert_file``/``key_file``: with a CA and a cert the
port also accepts native TLS with ALPN (``wanfedtx.rpc.server``), and ``verify_incoming`` applies
to the legacy path. Other parts (raft, WAN gossip tunnels) register their handlers on
``registry`` before the service starts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.endpoints import Endpoints, default_endpoints
from wanfedtx.rpc.protocol import RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory, RPCPortService
from wanfedtx.tls.configurator import TLSConfigurator


def tls_configurator(config: RuntimeConfig) -> TLSConfigurator | None:
    """The agent's TLS configurator, or None when no TLS file is configured."""
    if not (config.ca_file or config.cert_file or config.key_file):
        return None
    return TLSConfigurator(config.tls_settings())


class ServerPort:
    """The registry, endpoint table and listening service of one server's RPC port."""

    def __init__(
        self,
        config: RuntimeConfig,
        reactor: Any,
        tls: TLSConfigurator | None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.endpoints = endpoints if endpoints is not None else default_endpoints()
        self.registry = HandlerRegistry()
        self.registry.register(RPCType.CONSUL, RPCHandler(self.endpoints, multi=False))
        self.registry.register(RPCType.MULTIPLEX_V2, RPCHandler(self.endpoints, multi=True))
        self.factory = RPCPortFactory(
            self.registry, reactor, tls, handshake_timeout=config.rpc_handshake_timeout
        )
        host, port = config.rpc_bind_addr
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        self.service = RPCPortService(endpoint_type(reactor, port, interface=host), self.factory)
