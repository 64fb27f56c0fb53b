# -*- test-case-name: tests.unit.gateway.test_gateway_agentwatch,tests.integration.gateway -*-
"""The mesh gateway fed by its local agent: the reference's proxycfg watches, over HTTP.

Envoy gets its mesh-gateway configuration from the agent's proxycfg; our gateway is its own
process and watches the agent's HTTP API with blocking queries instead:

* the gateway's own service registration (``/v1/agent/service/<proxy-id>``, polled): kind,
  port, address, tagged addresses (the binds) and the ``consul-wan-federation`` meta;
* with that meta, the local servers (``/v1/health/service/consul``, no passing filter; every entry
  must be service ``consul`` in the local datacenter, else the reference's errors), and
* with that meta, the mesh gateways of every datacenter from the federation states
  (``/v1/internal/federation-states/mesh-gateways``), and
* with or without it, the datacenters the agent knows and, for each other one, its mesh
  gateways from a service dump of kind mesh-gateway (the reference's ``GatewayGroups``; the
  sources and their merge are in :mod:`wanfedtx.gateway.dcwatch`), and
* the Connect CA roots (``/v1/agent/connect/ca/roots``): their ``TrustDomain``
  (``<cluster-id>.consul``) names the ``<dc>.internal.<trust-domain>`` clusters, unless the
  gateway was given a trust domain (``-trust-domain``, an override). No snapshot is built before
  the roots name a trust domain (the reference waits for the roots too); an agent with Connect
  disabled answers ``Connect must be enabled ...`` and the gateway then uses ``consul`` (one
  warning).

Each change rebuilds :class:`~wanfedtx.gateway.snapshot.SnapshotInputs`; the snapshot is not
valid (no inputs are produced) while a wanfed gateway knows no local server, as the reference.
The conversions are plain functions; :class:`AgentWatcher` is the Twisted service running the
watch loops.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool

from wanfedtx import jsondecode
from wanfedtx.gateway.dcwatch import (
    DATACENTERS_PATH,
    DATACENTERS_POLL,
    GatewayGroup,
    datacenters_from,
    group_of,
    groups_from_federation_states,
    merge_gateways,
    service_dump_path,
)
from wanfedtx.gateway.errors import SnapshotInputError
from wanfedtx.gateway.snapshot import (
    BindInput,
    EndpointInput,
    ServerInput,
    SnapshotInputs,
)
from wanfedtx.reactors import ReactorLike
from wanfedtx.services import Service

log = Logger(namespace="proxycfg")

WANFED_META = "consul-wan-federation"
MESH_GATEWAY_KIND = "mesh-gateway"
REGISTRATION_POLL = 5.0
BLOCKING_WAIT = "5m"
RETRY_MIN = 0.5
RETRY_MAX = 30.0
_DNS_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


CONNECT_DISABLED = "Connect must be enabled"
FALLBACK_TRUST_DOMAIN = "consul"


class AgentWatchError(SnapshotInputError):
    """The agent's answer cannot feed the gateway (the reference's proxycfg errors)."""


def trust_domain_from_roots(data: Any) -> str:
    """The ``TrustDomain`` of a ``/v1/agent/connect/ca/roots`` answer ("" before the CA is
    bootstrapped); AgentWatchError when it is not a DNS name."""
    if not isinstance(data, Mapping):
        raise AgentWatchError("connect ca roots: expected a JSON object")
    td = data.get("TrustDomain") or ""
    if not isinstance(td, str) or (td and not _DNS_NAME.match(td)):
        raise AgentWatchError(f"connect ca roots: invalid TrustDomain {td!r}")
    return td.lower()


@attrs.frozen
class Registration:
    """What the gateway reads from its own service registration."""

    datacenter: str
    service_id: str
    port: int
    binds: tuple[BindInput, ...]
    wan_federation: bool


def registration_from_json(
    datacenter: str, service: Mapping[str, Any], node_address: str = ""
) -> Registration:
    """The gateway's registration from ``/v1/agent/service/<id>``.

    Binds as the reference's mesh gateway: ``default`` on the service address (``0.0.0.0`` when
    empty) and the service port, plus the ``lan``/``wan`` tagged addresses that differ from it.
    """
    kind = service.get("Kind") or ""
    sid = str(service.get("ID") or "")
    if kind != MESH_GATEWAY_KIND:
        raise AgentWatchError(f"service {sid!r} is of kind {kind!r}, not a mesh-gateway")
    port = int(service.get("Port") or 0)
    if port <= 0:
        raise AgentWatchError(f"mesh gateway {sid!r} has no port")
    default = BindInput("default", str(service.get("Address") or "0.0.0.0"), port)
    binds = [default]
    tagged = service.get("TaggedAddresses") or {}
    for name in ("lan", "wan"):
        entry = tagged.get(name)
        if not isinstance(entry, Mapping) or not entry.get("Address"):
            continue
        bind = BindInput(name, str(entry["Address"]), int(entry.get("Port") or port))
        if (bind.address, bind.port) not in {(b.address, b.port) for b in binds}:
            binds.append(bind)
    meta = service.get("Meta") or {}
    return Registration(datacenter, sid, port, tuple(binds), meta.get(WANFED_META) == "1")


def servers_from_health(entries: Any, datacenter: str) -> tuple[ServerInput, ...]:
    """Local servers from ``/v1/health/service/consul`` (every entry, whatever its health)."""
    out = []
    for entry in entries or ():
        node, svc = entry.get("Node") or {}, entry.get("Service") or {}
        name = svc.get("Service", "")
        if name != "consul":
            raise AgentWatchError(f'expected service name "consul" but got "{name}"')
        dc = node.get("Datacenter", "")
        if dc != datacenter:
            raise AgentWatchError(f'expected datacenter "{datacenter}" but got "{dc}"')
        address = svc.get("Address") or node.get("Address") or ""
        out.append(ServerInput(str(node.get("Node", "")), str(address), int(svc.get("Port") or 0)))
    return tuple(out)


def endpoint_of(entry: Mapping[str, Any], local_dc: str) -> EndpointInput:
    """A gateway instance as an endpoint: its WAN address when it is in another datacenter
    (see :meth:`EndpointInput.from_check_service_node`), health and weight from its checks."""
    node = entry.get("Node") or {}
    return EndpointInput.from_check_service_node(
        entry, wan=node.get("Datacenter", local_dc) != local_dc
    )


def agent_domain(agent_self: Mapping[str, Any]) -> str:
    """The agent's DNS domain from ``/v1/agent/self`` (``DebugConfig.DNSDomain`` without its
    trailing dot; ``consul`` when the agent does not say)."""
    debug = agent_self.get("DebugConfig") or {}
    domain = str(debug.get("DNSDomain") or "").rstrip(".")
    return domain or "consul"


def gateways_from_federation_states(
    data: Mapping[str, Any], local_dc: str
) -> dict[str, tuple[EndpointInput, ...]]:
    """``/v1/internal/federation-states/mesh-gateways`` (DC -> CheckServiceNodes) as endpoints."""
    return {dc: g.endpoints for dc, g in groups_from_federation_states(data, local_dc).items()}


def snapshot_inputs(
    reg: Registration,
    servers: tuple[ServerInput, ...],
    gateways: Mapping[str, tuple[EndpointInput, ...]],
    trust_domain: str,
    domain: str = "consul",
) -> SnapshotInputs | None:
    """The snapshot inputs, or None while the snapshot would not be valid (a wanfed gateway
    with no local server)."""
    if reg.wan_federation and not servers:
        return None
    return SnapshotInputs(
        datacenter=reg.datacenter,
        trust_domain=trust_domain,
        binds=reg.binds,
        domain=domain,
        wan_federation=reg.wan_federation,
        servers=servers if reg.wan_federation else (),
        gateways=dict(gateways),
    )


class AgentWatcher(Service):
    """Runs the watches against the agent at ``http_base`` and calls ``on_inputs`` with every
    new valid :class:`SnapshotInputs`."""

    def __init__(
        self,
        reactor: ReactorLike,
        http_base: str,
        proxy_id: str,
        on_inputs: Callable[[SnapshotInputs], None],
        trust_domain: str | None = None,
        token: str = "",
        domain: str = "consul",
        rng: random.Random | None = None,
    ) -> None:
        self.reactor = reactor
        self.http_base = http_base.rstrip("/")
        self.proxy_id = proxy_id
        self.on_inputs = on_inputs
        #: ``-trust-domain``: used instead of the CA roots' trust domain when set
        self.trust_domain_override = trust_domain or None
        #: the trust domain of the agent's CA roots ("" until known)
        self.roots_trust_domain = ""
        self.domain = domain
        self.token = token
        self.rng = rng if rng is not None else random.Random()
        self.registration: Registration | None = None
        self.servers: tuple[ServerInput, ...] = ()
        #: the merged gateways per datacenter the snapshot uses
        self.gateways: dict[str, tuple[EndpointInput, ...]] = {}
        #: ``GatewayGroups``: other datacenters' gateways from their service dumps
        self.gateway_groups: dict[str, GatewayGroup] = {}
        #: ``FedStateGateways``: every datacenter's gateways from the federation states
        self.fed_state_gateways: dict[str, GatewayGroup] = {}
        self._dc_watches: dict[str, Deferred[None]] = {}
        self._datacenters_started = False
        self.inputs: SnapshotInputs | None = None
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._loops: list[Deferred[None]] = []
        self._blocking_started = False
        self._wake: Deferred[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        return self.trust_domain_override or self.roots_trust_domain

    def startService(self) -> None:
        super().startService()
        self._spawn(self._poll_registration())
        if self.trust_domain_override is None:
            self._spawn(self._watch_roots())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for d in self._loops:
            d.cancel()
        self._loops = []
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    def _spawn(self, coro: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(coro)
        d.addErrback(_log_unless_cancelled)
        self._loops.append(d)
        return d

    # -- HTTP ------------------------------------------------------------------------------

    async def _get(self, path: str, index: int = 0) -> tuple[Any, int]:
        sep = "&" if "?" in path else "?"
        url = f"{self.http_base}{path}"
        if index:
            url += f"{sep}index={index}&wait={BLOCKING_WAIT}"
        headers: dict[bytes | str, bytes | str] | None = (
            {"X-Consul-Token": self.token} if self.token else None
        )
        resp = await treq.get(url, headers=headers, pool=self._pool)
        body = await resp.content()
        if resp.code != 200:
            text = body.decode("utf-8", "replace").strip()
            raise AgentWatchError(f"GET {path}: HTTP {resp.code}: {text}")
        raw = resp.headers.getRawHeaders("X-Consul-Index") or ["0"]
        return treq_json(body), int(raw[0])

    async def _pause(self, failures: int) -> None:
        delay = min(RETRY_MAX, RETRY_MIN * (2 ** min(failures, 8)))
        await deferLater(self.reactor, delay * (0.5 + self.rng.random() / 2), lambda: None)

    # -- the watches -----------------------------------------------------------------------

    async def _poll_registration(self) -> None:
        failures = 0
        while self.running:
            try:
                agent_self, _ = await self._get("/v1/agent/self")
                service, _ = await self._get(f"/v1/agent/service/{self.proxy_id}")
                reg = registration_from_json(agent_self["Config"]["Datacenter"], service)
                self.domain = agent_domain(agent_self)
            except CancelledError:
                return
            except Exception as e:
                failures += 1
                log.warn("gateway registration watch failed: {error}", error=str(e))
                await self._pause(failures)
                continue
            failures = 0
            if reg != self.registration:
                self.registration = reg
                self._update()
            if not self._datacenters_started:
                self._datacenters_started = True
                self._spawn(self._watch_datacenters())
            if reg.wan_federation and not self._blocking_started:
                self._blocking_started = True
                self._spawn(self._blocking("/v1/health/service/consul", self._set_servers))
                self._spawn(
                    self._blocking(
                        "/v1/internal/federation-states/mesh-gateways?stale", self._set_gateways
                    )
                )
            await self._sleep(REGISTRATION_POLL)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until :meth:`refresh`."""
        wake: Deferred[None] = Deferred()
        self._wake = wake
        call = self.reactor.callLater(seconds, self.refresh)
        try:
            await wake
        finally:
            if call.active():
                call.cancel()

    def refresh(self) -> None:
        """Read the registration (and the agent's domain) again now: the gateway's SIGHUP."""
        wake, self._wake = self._wake, None
        if wake is not None and not wake.called:
            wake.callback(None)

    async def _blocking(self, path: str, handle: Callable[[Any], None]) -> None:
        index, failures = 0, 0
        while self.running:
            try:
                value, new_index = await self._get(path, index)
                handle(value)
            except CancelledError:
                return
            except Exception as e:
                failures += 1
                log.warn("gateway watch {path} failed: {error!r}", path=path, error=e)
                await self._pause(failures)
                continue
            failures = 0
            index = new_index if new_index > index else 0

    async def _watch_roots(self) -> None:
        """The CA roots' trust domain, as a blocking watch; ``consul`` without Connect."""
        index, failures = 0, 0
        while self.running:
            try:
                value, new_index = await self._get("/v1/agent/connect/ca/roots", index)
                self._set_trust_domain(trust_domain_from_roots(value))
            except CancelledError:
                return
            except AgentWatchError as e:
                if CONNECT_DISABLED in str(e):
                    log.warn("the agent has Connect disabled: gateway cluster names use the "
                             "trust domain {td}", td=FALLBACK_TRUST_DOMAIN)
                    self._set_trust_domain(FALLBACK_TRUST_DOMAIN)
                    return
                failures += 1
                log.warn("gateway watch of the CA roots failed: {error}", error=str(e))
                await self._pause(failures)
                continue
            except Exception as e:
                failures += 1
                log.warn("gateway watch of the CA roots failed: {error!r}", error=e)
                await self._pause(failures)
                continue
            failures = 0
            index = new_index if new_index > index else 0

    def _set_trust_domain(self, td: str) -> None:
        if td != self.roots_trust_domain:
            if td:
                log.info("gateway trust domain from the Connect CA roots: {td}", td=td)
            self.roots_trust_domain = td
            self._update()

    def _set_servers(self, entries: Any) -> None:
        if self.registration is None:
            return
        servers = servers_from_health(entries, self.registration.datacenter)
        if servers != self.servers:
            self.servers = servers
            self._update()

    def _set_gateways(self, data: Any) -> None:
        if self.registration is None:
            return
        fed = groups_from_federation_states(data, self.registration.datacenter)
        if fed != self.fed_state_gateways:
            self.fed_state_gateways = fed
            self._merge()

    async def _watch_datacenters(self) -> None:
        """The ``datacenters`` watch: one service-dump watch per other datacenter."""
        failures = 0
        while self.running:
            try:
                value, _ = await self._get(DATACENTERS_PATH)
                self._set_datacenters(datacenters_from(value))
            except CancelledError:
                return
            except Exception as e:
                failures += 1
                log.warn("gateway watch of the datacenters failed: {error}", error=str(e))
                await self._pause(failures)
                continue
            failures = 0
            await deferLater(self.reactor, DATACENTERS_POLL, lambda: None)

    def _set_datacenters(self, dcs: list[str]) -> None:
        if self.registration is None:
            return
        local = self.registration.datacenter
        wanted = {dc for dc in dcs if dc != local}
        for dc in sorted(wanted - self._dc_watches.keys()):
            self._dc_watches[dc] = self._spawn(
                self._blocking(service_dump_path(dc), functools.partial(self._set_group, dc)))
        gone = sorted(self._dc_watches.keys() - wanted)
        for dc in gone:
            self._dc_watches.pop(dc).cancel()
            self.gateway_groups.pop(dc, None)
        if gone:
            self._merge()

    def _set_group(self, dc: str, entries: Any) -> None:
        if self.registration is None or dc not in self._dc_watches:
            return
        group = group_of(entries, self.registration.datacenter)
        if group.endpoints:
            if self.gateway_groups.get(dc) == group:
                return
            self.gateway_groups[dc] = group
        elif self.gateway_groups.pop(dc, None) is None:
            return
        self._merge()

    def _merge(self) -> None:
        gateways = merge_gateways(self.gateway_groups, self.fed_state_gateways)
        if gateways != self.gateways:
            self.gateways = gateways
            self._update()

    def _update(self) -> None:
        if self.registration is None or not self.trust_domain:
            return
        inputs = snapshot_inputs(
            self.registration, self.servers, self.gateways, self.trust_domain, self.domain
        )
        if inputs is None or inputs == self.inputs:
            return
        self.inputs = inputs
        self.on_inputs(inputs)


def _log_unless_cancelled(failure: Failure) -> None:
    if not failure.check(CancelledError):
        log.failure("gateway watch stopped", failure=failure)


def treq_json(body: bytes) -> Any:
    try:
        return jsondecode.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AgentWatchError(f"the agent sent invalid JSON: {e}") from None
