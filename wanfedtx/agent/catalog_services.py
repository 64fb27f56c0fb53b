# -*- test-case-name: tests.unit.agent.test_agent_hold_timeout -*-
"""Wiring of the state-backed parts of one agent into a ``MultiService``.

:class:`CatalogAgent` holds the FSM and state store, the consensus it applies through
(``LocalConsensus`` unless a raft implementation is passed), the RPC endpoints, the agent's
local services and checks (from config and HTTP), the check runners, anti-entropy, and the
leader routine that registers this server as service ``consul`` with ``serfHealth`` (a child of
the ``LeaderServices`` that runs it while this server leads).
``wanfedtx.http.routes.server_families(catalog)`` serves it over HTTP.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred

from wanfedtx.catalog import leader
from wanfedtx.catalog.endpoints import DEFAULT_HOLD_TIMEOUT, Endpoints, Forwarder
from wanfedtx.catalog.tombstones import TombstoneReaper
from wanfedtx.fsm.consensus import Consensus, LocalConsensus
from wanfedtx.fsm.machine import FSM
from wanfedtx.local.ae import AntiEntropy
from wanfedtx.local.checks import CheckRunners
from wanfedtx.local.definitions import decode_check, decode_service
from wanfedtx.local.state import LocalState
from wanfedtx.reactors import ReactorLike
from wanfedtx.services import MultiService, Service


class CatalogAgent(MultiService):
    """State store, endpoints, local services/checks and anti-entropy of one server agent."""

    def __init__(
        self,
        *,
        node_name: str,
        datacenter: str,
        advertise_addr: str,
        server_port: int,
        reactor: ReactorLike,
        services: Iterable[Any] = (),
        node_id: str = "",
        node_meta: dict[str, str] | None = None,
        consensus: Consensus | None = None,
        fsm: FSM | None = None,
        forwarder: Forwarder | None = None,
        rng: random.Random | None = None,
        ae_interval: float = 60.0,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
        agent_token: str = "",
    ) -> None:
        super().__init__()
        self.node_name = node_name
        self.datacenter = datacenter
        self.advertise_addr = advertise_addr
        self.server_port = server_port
        self.node_id = node_id
        self.reactor = reactor
        self.fsm = fsm if fsm is not None else FSM()
        self.consensus: Consensus = (
            consensus
            if consensus is not None
            else LocalConsensus(self.fsm, f"{advertise_addr}:{server_port}")
        )
        self.endpoints = Endpoints(
            datacenter, self.fsm.state, self.consensus, reactor, rng, forwarder,
            hold_timeout=hold_timeout,
        )
        self.handlers = self.endpoints.handlers()
        self.local = LocalState(node_name)
        self.runners = CheckRunners(self.local, reactor)
        self.runners.setServiceParent(self)
        # Config-file services: decoded with the same rules as HTTP registrations.
        for i, raw in enumerate(services):
            # its own ACL token (``services { token }``), else the agent's
            token = str(raw.get("Token") or "")
            self.local.add_service(decode_service(raw, f"services[{i}]"), token)
        self.ae = AntiEntropy(
            self.local,
            self.rpc,
            {
                "Datacenter": datacenter,
                "ID": node_id,
                "Address": advertise_addr,
                "TaggedAddresses": {"lan": advertise_addr, "wan": advertise_addr},
                "NodeMeta": dict(node_meta or {}),
            },
            reactor,
            rng,
            ae_interval,
            agent_token=agent_token,
        )
        self.ae.setServiceParent(self)
        self.leader = leader.LeaderServices(self.consensus, self._leader_routines)
        self.leader.setServiceParent(self)
        # KV tombstones older than the tombstone TTL: noted on every server, reaped by the leader
        self.tombstones = TombstoneReaper(self.endpoints, reactor)
        self.tombstones.setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        # first: requests held for a leader fail now, so that anti-entropy's stop (which waits
        # for its sync) never waits out performance.rpc_hold_timeout
        self.endpoints.stop()
        d: Deferred[None] = super().stopService()
        return d

    def rpc(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        """Call a local RPC endpoint (the agent's own RPC, as the reference's ``agent.RPC``)."""
        handler = self.handlers.get(method)
        if handler is None:
            raise KeyError(f"unknown RPC method {method!r}")
        return handler(args)

    def _leader_routines(self) -> list[Service]:
        """While leading: register this server (service ``consul`` + ``serfHealth``) and let
        anti-entropy retry at once (its syncs fail while there is no leader)."""
        return [
            leader.ServerRegistration(
                self.endpoints,
                self.node_name,
                self.advertise_addr,
                self.server_port,
                self.node_id,
                then=self.ae.trigger,
            )
        ]


def _check_dict(check: Any) -> dict[str, Any]:
    """A config ``CheckDefinition`` (attrs, seconds) as a definition dict for ``decode_check``."""
    out: dict[str, Any] = {
        "CheckID": check.id,
        "Name": check.name,
        "Notes": check.notes,
        "ServiceID": check.service_id,
        "Status": check.status,
        "HTTP": check.http,
        "Method": check.method,
        "Header": {k: [v] if isinstance(v, str) else list(v) for k, v in check.header.items()},
        "TCP": check.tcp,
        "TLSSkipVerify": check.tls_skip_verify,
        "Args": list(check.script_args),
        "GRPC": check.grpc,
        "AliasNode": check.alias_node,
        "AliasService": check.alias_service,
    }
    for key, seconds in (
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("TTL", check.ttl),
    ):
        if seconds:
            out[key] = f"{seconds}s"
    return out


def service_dict(svc: Any) -> dict[str, Any]:
    """A config ``ServiceDefinition`` (``wanfedtx.config.runtime``) as a definition dict."""
    return {
        "Kind": svc.kind,
        "ID": svc.id,
        "Name": svc.name,
        "Tags": list(svc.tags),
        "Address": svc.address,
        "TaggedAddresses": {
            k: {"Address": v.address, "Port": v.port} for k, v in svc.tagged_addresses.items()
        },
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "EnableTagOverride": svc.enable_tag_override,
        "Weights": {"Passing": svc.weights_passing, "Warning": svc.weights_warning},
        "Checks": [_check_dict(c) for c in svc.checks],
        "Token": svc.token,
    }


def catalog_agent_from_config(
    config: Any,
    reactor: ReactorLike,
    consensus: Consensus | None = None,
    fsm: FSM | None = None,
    forwarder: Forwarder | None = None,
) -> CatalogAgent:
    """The ``CatalogAgent`` of a server agent described by a ``RuntimeConfig``.

    ``consensus`` is the agent's raft service (``LocalConsensus``, in memory, when None) and
    ``forwarder`` reaches its leader; with no forwarder, ``?dc=`` other than ours answers
    "No path to datacenter".
    """
    agent = CatalogAgent(
        node_name=config.node_name,
        datacenter=config.datacenter,
        advertise_addr=config.advertise_addr_lan,
        server_port=config.server_port,
        reactor=reactor,
        services=[service_dict(s) for s in config.services],
        node_id=config.node_id,
        node_meta=dict(config.node_meta),
        consensus=consensus,
        fsm=fsm,
        forwarder=forwarder,
        hold_timeout=config.rpc_hold_timeout,
        agent_token=config.acl_tokens.agent or config.acl_tokens.default,
    )
    for i, check in enumerate(config.checks):
        agent.local.add_check(decode_check(_check_dict(check), f"checks[{i}]"))
    return agent
