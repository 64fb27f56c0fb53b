# -*- test-case-name: tests.unit.gateway.test_gateway_register -*-
"""Gateway self-registration, as ``consul connect envoy -gateway=mesh -register``.

The pure part checks the flags (:func:`check_gateway_flags`, with Consul's exact error texts) and
builds the ``PUT /v1/agent/service/register`` body (:func:`registration_payload`): kind
``mesh-gateway``, name and ID from ``-service`` (default ``mesh-gateway``), address and port from
``-address`` (port 443 when absent), ``lan``/``wan`` tagged addresses, the
``consul-wan-federation = "1"`` meta with ``-expose-servers``, the bind settings Envoy reads and
a TCP check on the LAN address (``127.0.0.1`` without one) every 10 s.

:class:`AgentClient` talks to the local agent with treq (a ``StubTreq`` in tests): the agent's
datacenter and DNS domain (``/v1/agent/self``), register and deregister.
:class:`RegisteredGateway` is the service that registers, runs the gateway and deregisters on
stop.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import treq
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx import jsondecode
from wanfedtx.gateway.agentwatch import MESH_GATEWAY_KIND, WANFED_META, agent_domain
from wanfedtx.services import MultiService

GATEWAY_KINDS: Mapping[str, str] = {
    "mesh": MESH_GATEWAY_KIND,
    "terminating": "terminating-gateway",
    "ingress": "ingress-gateway",
}
DEFAULT_GATEWAY_PORT = 443
CHECK_INTERVAL = "10s"
DEFAULT_DEREGISTER_AFTER_CRITICAL = "6h"
DEREGISTER_TIMEOUT = 5.0

log = Logger(namespace="wanfed.gateway")


class GatewayFlagError(Exception):
    """A gateway command line Consul refuses; the message is Consul's text."""


class AgentRequestError(Exception):
    """The local agent could not be reached or refused the request."""


@attrs.frozen
class GatewayFlags:
    """The ``connect envoy`` flags that concern registration."""

    gateway: str = ""
    mesh_gateway: bool = False
    register: bool = False
    expose_servers: bool = False
    proxy_id: str = ""
    service: str = ""
    address: str = ""
    wan_address: str = ""
    deregister_after_critical: str = DEFAULT_DEREGISTER_AFTER_CRITICAL


def check_gateway_flags(f: GatewayFlags) -> str:
    """The gateway kind (``mesh-gateway``, ...) or "" when no gateway is asked for; raises
    :class:`GatewayFlagError` with Consul's message, in Consul's order of checks."""
    gateway = f.gateway
    if f.mesh_gateway:
        if gateway:
            raise GatewayFlagError(
                "The mesh-gateway flag is deprecated and cannot be used alongside the gateway flag"
            )
        gateway = "mesh"
    if f.expose_servers:
        if gateway != "mesh":
            raise GatewayFlagError("'-expose-servers' can only be used for mesh gateways")
        if not f.register:
            raise GatewayFlagError("'-expose-servers' requires '-register'")
    if gateway and gateway not in GATEWAY_KINDS:
        raise GatewayFlagError("Gateway must be one of: terminating, mesh, or ingress")
    if f.register and not gateway:
        raise GatewayFlagError("Auto-Registration can only be used for gateways")
    return GATEWAY_KINDS[gateway] if gateway else ""


def parse_service_address(text: str, flag: str) -> tuple[str, int]:
    """``ip:port``, ``ip`` or ``:port`` (port 0 when absent); raises :class:`GatewayFlagError`."""
    text = text.strip()
    if not text:
        return "", 0
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        if host:
            ipaddress.ip_address(host)
        port = int(port_text) if port_text else 0
    except ValueError:
        raise GatewayFlagError(f"Invalid {flag} {text!r}: expected IP:PORT") from None
    if not 0 <= port < 65536:
        raise GatewayFlagError(f"Invalid {flag} {text!r}: port out of range")
    return host, port


def can_bind(ip: str) -> bool:
    """Consul's ``canBind``: ``ip`` is one of this host's interface addresses (an unspecified
    address is not). Probed by binding a UDP socket to it."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_unspecified:
        return False
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
    except OSError:
        return False
    return True


def registration_payload(
    f: GatewayFlags, kind: str, bindable: Any = can_bind
) -> dict[str, Any]:
    """The ``PUT /v1/agent/service/register`` body of ``-register`` (Consul's, field for
    field); raises :class:`GatewayFlagError` for a LAN address that cannot be bound."""
    name = f.service or kind
    sid = f.proxy_id or name
    lan_ip, lan_port = parse_service_address(f.address, "-address")
    lan_port = lan_port or DEFAULT_GATEWAY_PORT
    wan_ip, wan_port = parse_service_address(f.wan_address, "-wan-address")
    wan_port = wan_port or lan_port
    tagged: dict[str, dict[str, Any]] = {}
    if lan_ip:
        tagged["lan"] = {"Address": lan_ip, "Port": lan_port}
    if wan_ip:
        tagged["wan"] = {"Address": wan_ip, "Port": wan_port}
    proxy: dict[str, Any] | None = None
    if bindable(lan_ip) and bindable(wan_ip):
        proxy = {
            "Config": {
                "envoy_gateway_no_default_bind": True,
                "envoy_gateway_bind_tagged_addresses": True,
            }
        }
    elif lan_ip and not bindable(lan_ip):
        raise GatewayFlagError(
            f'The LAN address "{lan_ip}" will not be bindable. Either set a bindable address or'
            " override the bind addresses with -bind-address"
        )
    check_host = lan_ip or "127.0.0.1"
    check_addr = f"[{check_host}]:{lan_port}" if ":" in check_host else f"{check_host}:{lan_port}"
    body: dict[str, Any] = {
        "Kind": kind,
        "ID": sid,
        "Name": name,
        "Address": lan_ip,
        "Port": lan_port,
        "Meta": {WANFED_META: "1"} if f.expose_servers else None,
        "TaggedAddresses": tagged,
        "Check": {
            "Name": f"{kind} listening",
            "TCP": check_addr,
            "Interval": CHECK_INTERVAL,
            "DeregisterCriticalServiceAfter": f.deregister_after_critical,
        },
    }
    if proxy is not None:
        body["Proxy"] = proxy
    return body


@attrs.frozen
class AgentInfo:
    """What the gateway needs from ``/v1/agent/self``."""

    datacenter: str
    domain: str


def agent_info(agent_self: Mapping[str, Any]) -> AgentInfo:
    """Datacenter and DNS domain (``DebugConfig.DNSDomain`` without its dot, ``consul`` when the
    agent does not say)."""
    config = agent_self.get("Config") or {}
    return AgentInfo(str(config.get("Datacenter") or ""), agent_domain(agent_self))


class AgentClient:
    """The local agent's HTTP API, for the gateway's registration (``http``: treq or a
    ``StubTreq``)."""

    def __init__(self, base: str, token: str = "", http: Any = treq) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.http = http

    def _headers(self) -> dict[bytes | str, bytes | str] | None:
        return {"X-Consul-Token": self.token} if self.token else None

    async def _call(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        try:
            resp = await self.http.request(
                method, f"{self.base}{path}", data=data, headers=self._headers()
            )
            content: bytes = await resp.content()
        except Exception as e:  # connection refused, DNS, ...: one line for the user
            text = getattr(e, "reasons", None) or e
            raise AgentRequestError(f"{method} {path}: {_reason(text)}") from None
        if resp.code != 200:
            text = content.decode("utf-8", "replace").strip()
            raise AgentRequestError(f"Unexpected response code: {resp.code} ({text})")
        return content

    async def info(self) -> AgentInfo:
        raw = await self._call("GET", "/v1/agent/self")
        try:
            return agent_info(jsondecode.loads(raw))
        except (ValueError, AttributeError) as e:
            raise AgentRequestError(f"GET /v1/agent/self: invalid answer: {e}") from None

    async def register(self, payload: Mapping[str, Any]) -> None:
        await self._call("PUT", "/v1/agent/service/register", payload)

    async def deregister(self, service_id: str) -> None:
        await self._call("PUT", f"/v1/agent/service/deregister/{service_id}")


def _reason(err: Any) -> str:
    """One line for a treq/Twisted connection error (``ResponseNeverReceived`` has reasons)."""
    if isinstance(err, list) and err:
        err = err[0]
    value = getattr(err, "value", err)
    return str(value) or type(value).__name__


class RegisteredGateway(MultiService):
    """``-register``: register the gateway's service with the local agent, then run the gateway
    the agent feeds (its only child, added once registered); stopping stops the gateway and
    then deregisters the service.

    A registration the agent refuses (or an agent that cannot be reached) is fatal:
    ``on_fatal`` gets Consul's line (``Error registering service "mesh-gateway": ...``).
    """

    def __init__(
        self,
        client: AgentClient,
        payload: Mapping[str, Any],
        gateway: Any,
        on_fatal: Callable[[str], object],
        clock: IReactorTime,
        deregister_timeout: float = DEREGISTER_TIMEOUT,
    ) -> None:
        super().__init__()
        self.client = client
        self.payload = dict(payload)
        self.gateway = gateway
        self.on_fatal = on_fatal
        self.clock = clock
        self.deregister_timeout = deregister_timeout
        self.registered = False
        self._starting: Deferred[None] | None = None
        # Once the gateway listens, register again: the agent probes the TCP check at once
        # instead of leaving it critical until the next 10 s interval.
        gateway.on_listening = self._register_again

    @property
    def service_name(self) -> str:
        return str(self.payload.get("Name", ""))

    def startService(self) -> None:
        super().startService()
        self._starting = Deferred.fromCoroutine(self._register_then_run())

    async def _register_then_run(self) -> None:
        try:
            await self.client.register(self.payload)
        except AgentRequestError as e:
            if self.running:
                self.on_fatal(f'Error registering service "{self.service_name}": {e}')
            return
        self.registered = True
        log.info("Registered service: {name}", name=self.service_name)
        if self.running:
            self.gateway.setServiceParent(self)

    def _register_again(self) -> None:
        async def again() -> None:
            try:
                await self.client.register(self.payload)
            except AgentRequestError as e:
                log.warn("gateway: registering the service again failed: {error}", error=str(e))

        if self.registered and self.running:
            Deferred.fromCoroutine(again())

    def reload(self) -> bool:
        """SIGHUP: register the service again (an agent restarted without it gets it back) and
        reload the gateway (registration and domain read again)."""
        self._register_again()
        reloaded: bool = self.gateway.reload()
        return reloaded

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[Any] = super().stopService()

        async def deregister(_: object) -> None:
            if not self.registered:
                return
            self.registered = False
            sid = str(self.payload.get("ID", ""))
            d = Deferred.fromCoroutine(self.client.deregister(sid))
            d.addTimeout(self.deregister_timeout, self.clock)
            try:
                await d
            except (AgentRequestError, TimeoutError, CancelledError) as e:
                log.warn("gateway: deregistering {id} failed: {error}", id=sid, error=str(e))
                return
            log.info("Deregistered service: {id}", id=sid)

        return stopped.addCallback(lambda r: Deferred.fromCoroutine(deregister(r)))
