"""``Agent``: one ``MultiService`` built from a ``RuntimeConfig``.

For now the agent owns the HTTP API (``/v1/agent/self``) on ``client_addr:ports.http``; later
parts (RPC port, raft, gossip, gateways) become child services here. The node ID is resolved when
the agent is built (``nodeid.resolve_node_id``) and stored in ``agent.config``.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger

from wanfedtx.agent.catalog_services import CatalogAgent, catalog_agent_from_config
from wanfedtx.agent.httpserver import HTTPServerService
from wanfedtx.agent.member import local_member
from wanfedtx.agent.nodeid import resolve_node_id
from wanfedtx.config.runtime import RuntimeConfig
from wanfedtx.http.app import build_app

log = Logger(namespace="agent")

class Agent(MultiService):
    """The wanfed agent process: every long-running part is a child service."""


    def __init__(self, config: RuntimeConfig, reactor: IReactorTCP | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        assert reactor is not None
        self.reactor = reactor
        self.config = attrs.evolve(config, node_id=resolve_node_id(config))
        self.app = build_app(self)
        # Servers: state store, catalog/health/KV endpoints, local services and anti-entropy.
        self.catalog: CatalogAgent | None = None
        if self.config.server_mode:
            self.catalog = catalog_agent_from_config(self.config, reactor)
            self.catalog.setName("catalog")  # type: ignore[no-untyped-call]
            self.catalog.setServiceParent(self)  # type: ignore[no-untyped-call]
            self.catalog.mount(self.app)
        self.http: HTTPServerService | None = None
        if self.config.http_addrs:
            self.http = HTTPServerService(reactor, self.app.resource(), self.config.http_addrs)
            self.http.setName("http")  # type: ignore[no-untyped-call]
            self.http.setServiceParent(self)  # type: ignore[no-untyped-call]

    # AgentView
    def member(self) -> dict[str, Any]:
        return local_member(self.config)

    def stats(self) -> dict[str, dict[str, str]]:
        rt = self.config
        return {
            "agent": {
                "check_monitors": "0",
                "check_ttls": "0",
                "checks": str(len(rt.checks)),
                "services": str(len(rt.services)),
            },
            "build": {"prerelease": "", "revision": rt.revision, "version": rt.version},
        }

    def http_urls(self) -> list[str]:
        """Base URLs of the HTTP API as bound (``http://127.0.0.1:8500``)."""
        if self.http is None:
            return []
        out = []
        for host, port in self.http.bound_addresses():
            shown = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
            out.append(f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}")
        return out

    def stop(self) -> Deferred[None]:
        """Stop every child service; the Deferred fires when every socket is closed."""
        d: Deferred[None] = maybeDeferred(self.stopService)
        return d.addCallback(lambda _: None)

    def startService(self) -> None:
        log.info(
            "Starting agent: node={node} dc={dc}",
            node=self.config.node_name,
            dc=self.config.datacenter,
        )
        super().startService()  # type: ignore[no-untyped-call]
