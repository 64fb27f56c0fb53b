# -*- test-case-name: tests.unit.connect.test_connect_ca_endpoints -*-
"""RPC endpoints ``ConnectCA.Roots``, ``.ConfigurationGet`` and ``.Sign`` of one server.

They ride on the catalog's :class:`~wanfedtx.catalog.endpoints.Endpoints` (state store,
consensus, forwarder, blocking queries). As the reference:

* ``Roots`` is a blocking read over the roots and config tables; its reply is an
  ``IndexedCARoots`` (``ActiveRootID``, ``TrustDomain`` = ``<cluster-id>.consul``, ``Roots``)
  whose roots are copied field by field (no key material), an empty list ``[]``.
* ``ConfigurationGet`` returns the stored ``CAConfiguration`` (``ClusterID`` is not shown).
* ``Sign`` takes a leaf CSR, runs on the leader of the datacenter it names, checks the SPIFFE
  ID (one service ID of this trust domain and datacenter), takes the next serial through raft
  and signs with this datacenter's signing key (at most ``CSRMaxPerSecond`` per second, 50 by
  default, a request waiting up to 500 ms for its slot, else ``Rate limit reached, try again
  later``): the root's in the primary, the intermediate's
  in a secondary (the chain then carries the intermediate).
* ``SignIntermediate`` (primary only, ``not the primary datacenter`` elsewhere) signs a
  secondary's intermediate CSR with the root; the reply is the PEM.
* ``ConfigurationSet`` stores a new configuration and rotates the root when it gives a new one
  (:mod:`wanfedtx.connect.rotation`).

The ACL checks (``operator:read`` for ``ConfigurationGet``, ``operator:write`` for
``ConfigurationSet`` and ``SignIntermediate``, ``service:write`` on the CSR's service for
``Sign``) are made by the ACL layer around these handlers (``wanfedtx.acl.enforce``).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import deferLater

from wanfedtx.catalog.endpoints import Endpoints, HandlerFn, as_handler
from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.config.durations import parse_duration_ns
from wanfedtx.connect import ca, intermediate, rotation
from wanfedtx.connect.errors import CAError
from wanfedtx.connect.fsm import OP_INCREMENT_SERIAL
from wanfedtx.fsm.commands import MessageType
from wanfedtx.state import WatchSet
from wanfedtx.state.table import Row

Args = dict[str, Any]
Handler = Callable[[Args], Deferred[Any]]

ROOTS = "ConnectCA.Roots"
CONFIGURATION_GET = "ConnectCA.ConfigurationGet"
CONFIGURATION_SET = "ConnectCA.ConfigurationSet"
SIGN = "ConnectCA.Sign"
SIGN_INTERMEDIATE = "ConnectCA.SignIntermediate"

DEFAULT_LEAF_TTL = "72h"
DEFAULT_INTERMEDIATE_TTL = "8760h"
DEFAULT_CSR_MAX_PER_SECOND = 50.0
CSR_MAX_WAIT = 0.5
RATE_LIMITED = "Rate limit reached, try again later"

_ROOT_FIELDS = (
    "ID", "Name", "SerialNumber", "SigningKeyID", "ExternalTrustDomain", "NotBefore",
    "NotAfter", "RootCert", "IntermediateCerts", "Active", "PrivateKeyType", "PrivateKeyBits",
    "CreateIndex", "ModifyIndex",
)


def provider_state_id(config: Mapping[str, Any], primary: bool) -> str:
    """The built-in provider's state row: colon-hex SHA-256 of
    ``"<PrivateKey>,<RootCert>,<true|false>"`` from the provider config."""
    raw = f"{config.get('PrivateKey', '')},{config.get('RootCert', '')},{str(primary).lower()}"
    return ca.hex_string(hashlib.sha256(raw.encode()).digest())


def indexed_roots(config: Mapping[str, Any] | None, roots: list[Args]) -> Args:
    """The ``IndexedCARoots`` of the stored config and roots (field-by-field copies)."""
    cluster_id = str((config or {}).get("ClusterID") or "")
    out = [{k: r.get(k) for k in _ROOT_FIELDS} for r in roots]
    active = next((r["ID"] for r in out if r.get("Active")), "")
    return {
        "ActiveRootID": active,
        "TrustDomain": ca.trust_domain(cluster_id) if cluster_id else "",
        "Roots": out,
    }


def _ttl(config: Mapping[str, Any] | None, name: str, default: str) -> datetime.timedelta:
    raw = str(((config or {}).get("Config") or {}).get(name) or default)
    return datetime.timedelta(microseconds=parse_duration_ns(raw) // 1000)


def leaf_ttl(config: Mapping[str, Any] | None) -> datetime.timedelta:
    return _ttl(config, "LeafCertTTL", DEFAULT_LEAF_TTL)


def intermediate_ttl(config: Mapping[str, Any] | None) -> datetime.timedelta:
    return _ttl(config, "IntermediateCertTTL", DEFAULT_INTERMEDIATE_TTL)


class CSRRateLimitError(CAError):
    """``CSRMaxPerSecond`` reached and no slot within 500 ms (HTTP 429)."""

    def __init__(self) -> None:
        super().__init__(RATE_LIMITED)


class CSRBucket:
    """The reference's leaf-signing limiter: a token bucket of burst 1 at ``rate`` per
    second; a caller may wait up to :data:`CSR_MAX_WAIT` for its slot."""

    def __init__(self) -> None:
        self.next_free = 0.0

    def reserve(self, now: float, rate: float) -> float:
        """Seconds to wait for a slot (reserved), or -1 when it is too far away."""
        start = max(now, self.next_free)
        if start - now > CSR_MAX_WAIT:
            return -1.0
        self.next_free = start + 1.0 / rate
        return start - now


def csr_rate(config: Mapping[str, Any] | None) -> float:
    raw = ((config or {}).get("Config") or {}).get("CSRMaxPerSecond", DEFAULT_CSR_MAX_PER_SECOND)
    try:
        return float(raw)
    except (TypeError, ValueError):
        return DEFAULT_CSR_MAX_PER_SECOND


class ConnectCAEndpoints:
    """The ``ConnectCA`` RPC service of one server."""

    def __init__(self, endpoints: Endpoints, primary_datacenter: str,
                 now: Callable[[], datetime.datetime] | None = None,
                 enabled: bool = True) -> None:
        self.endpoints = endpoints
        self.enabled = enabled
        self.csr_bucket = CSRBucket()
        #: One configuration change at a time (the reference's reconfiguration lock).
        self.config_lock = DeferredLock()
        self.primary_datacenter = primary_datacenter or endpoints.datacenter
        self.now = now if now is not None else (
            lambda: datetime.datetime.fromtimestamp(endpoints.clock.seconds(), datetime.UTC)
        )

    @property
    def is_primary(self) -> bool:
        return self.endpoints.datacenter == self.primary_datacenter

    def handlers(self) -> dict[str, Handler]:
        table: dict[str, HandlerFn] = {
            ROOTS: self.roots,
            CONFIGURATION_GET: self.configuration_get,
            CONFIGURATION_SET: self.configuration_set,
            SIGN: self.sign,
            SIGN_INTERMEDIATE: self.sign_intermediate,
        }

        def checked(fn: HandlerFn) -> HandlerFn:
            def call(args: Args) -> Any:
                if not self.enabled:
                    raise CAError("Connect must be enabled in order to use this endpoint")
                if not isinstance(args, dict):
                    raise BadRequestError("request must be an object")
                return fn(args)

            return call

        return {name: as_handler(checked(fn)) for name, fn in table.items()}

    def register_into(self, registry: Any) -> None:
        for name, handler in self.handlers().items():
            registry.register(name, handler)

    # -- reads ---------------------------------------------------------------------------------

    def roots(self, args: Args) -> Deferred[Any]:
        state = self.endpoints.state

        def query(ws: WatchSet | None) -> tuple[int, Args]:
            index, roots = state.ca_roots(ws)
            _, config = state.ca_config(ws)
            return index, indexed_roots(config, roots)

        return self.endpoints._read(ROOTS, args, query, dict)

    def configuration_get(self, args: Args) -> Deferred[Any]:
        state = self.endpoints.state

        def query(ws: WatchSet | None) -> tuple[int, Args | None]:
            return state.ca_config(ws)

        def shape(config: Args | None) -> Args:
            if config is None:
                raise CAError("CA configuration is not initialized yet")
            return {"Config": {k: config.get(k) for k in (
                "Provider", "Config", "State", "ForceWithoutCrossSigning",
                "CreateIndex", "ModifyIndex")}}

        return self.endpoints._read(CONFIGURATION_GET, args, query, shape)

    async def configuration_set(self, args: Args) -> Any:
        """A new CA configuration; a new root rotates (see :mod:`wanfedtx.connect.rotation`)."""
        rotation.parse_request(args)  # refuse a malformed body before forwarding
        forwarded, reply = await self.endpoints._forward(CONFIGURATION_SET, args, write=True)
        if forwarded:
            return reply
        await self.config_lock.acquire()
        try:
            return await rotation.configuration_set(self, args)
        finally:
            self.config_lock.release()

    # -- Sign ----------------------------------------------------------------------------------

    async def sign(self, args: Args) -> Any:
        csr = args.get("CSR")
        if not isinstance(csr, str) or not csr:
            raise BadRequestError("CSR must be a PEM string")
        forwarded, reply = await self.endpoints._forward(SIGN, args, write=True)
        if forwarded:
            return reply
        config, root = self._active_ca()
        key_pem, signing_pem = self.signing_material(config, root)
        td = ca.trust_domain(str(config["ClusterID"]))
        # validate before a serial is taken, so refused CSRs change nothing
        _, uri, _, service = ca.check_leaf_csr(csr, td, self.endpoints.datacenter)
        rate = csr_rate(config)
        if rate > 0:
            wait = self.csr_bucket.reserve(self.endpoints.clock.seconds(), rate)
            if wait < 0:
                raise CSRRateLimitError()
            if wait > 0:
                await deferLater(self.endpoints.clock, wait, lambda: None)
        serial = int(await self.endpoints._apply(
            MessageType.CONNECT_CA, {"Op": OP_INCREMENT_SERIAL}))
        pem = ca.sign_leaf(csr, key_pem, signing_pem, serial, self.now(), leaf_ttl(config),
                           td, self.endpoints.datacenter)
        cert = ca.load_cert(pem)
        chain = [pem, *(root.get("IntermediateCerts") or [])]
        return {
            "SerialNumber": ca.serial_hex(serial),
            "CertPEM": "\n".join(chain),
            "Service": service,
            "ServiceURI": uri,
            "ValidAfter": ca._rfc3339(cert.not_valid_before_utc),
            "ValidBefore": ca._rfc3339(cert.not_valid_after_utc),
            "CreateIndex": serial,
            "ModifyIndex": serial,
        }

    async def sign_intermediate(self, args: Args) -> Any:
        """The primary signs a secondary's intermediate CSR; the reply is the PEM."""
        csr = args.get("CSR")
        if not isinstance(csr, str) or not csr:
            raise BadRequestError("CSR must be a PEM string")
        forwarded, reply = await self.endpoints._forward(SIGN_INTERMEDIATE, args, write=True)
        if forwarded:
            return reply
        if not self.is_primary:
            raise CAError("not the primary datacenter")
        config, root = self._active_ca()
        key_pem, root_pem = self.signing_material(config, root)
        cluster_id = str(config["ClusterID"])
        intermediate.check_intermediate_csr(csr, cluster_id)
        serial = int(await self.endpoints._apply(
            MessageType.CONNECT_CA, {"Op": OP_INCREMENT_SERIAL}))
        return intermediate.sign_intermediate(csr, key_pem, root_pem, cluster_id, serial,
                                              self.now(), intermediate_ttl(config))

    def _active_ca(self) -> tuple[Row, Row]:
        """The stored CA configuration and active root; Consul's errors when either is missing."""
        state = self.endpoints.state
        _, config = state.ca_config(None)
        root = state.ca_active_root()
        if config is None or not config.get("ClusterID"):
            raise CAError("internal error: CA provider is nil")
        if root is None:
            raise CAError("internal error: CA root is nil")
        return config, root

    def signing_material(self, config: Args, root: Args) -> tuple[str, str]:
        """(CA key PEM, signing cert PEM) of this datacenter's built-in provider."""
        provider_config = config.get("Config") or {}
        row = self.endpoints.state.ca_provider_state(
            provider_state_id(provider_config, self.is_primary))
        if row is None or not row.get("PrivateKey"):
            raise CAError("internal error: CA provider is nil")
        signing = row.get("IntermediateCert") or row.get("RootCert") or root["RootCert"]
        return str(row["PrivateKey"]), str(signing)
