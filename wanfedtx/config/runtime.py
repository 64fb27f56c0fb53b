# -*- test-case-name: tests.unit.config -*-
"""``RuntimeConfig``: the built, validated configuration every part of the agent reads.

Frozen attrs classes with snake_case fields named after Consul's ``RuntimeConfig`` fields
(``primary_gateways``, ``primary_gateways_interval`` in float seconds,
``connect_mesh_gateway_wan_federation_enabled``, ``http_addrs`` as ``(host, port)`` pairs, ...).
``sanitized()`` renders it the way Consul's ``Sanitized()`` does for ``/v1/agent/self``'s
``DebugConfig``: Consul's CamelCase names, durations as Go duration strings, addresses as
``tcp://host:port``, and every string field whose name contains key, token or secret replaced by
``"hidden"``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from wanfedtx.config.durations import format_duration
from wanfedtx.hostport import join_host_port

if TYPE_CHECKING:
    from wanfedtx.tls.configurator import TLSSettings

Addr = tuple[str, int]

_DUR = {"duration": True}
_TCP = {"addr": "tcp"}

_ACRONYMS = {
    "id": "ID",
    "dns": "DNS",
    "http": "HTTP",
    "https": "HTTPS",
    "grpc": "GRPC",
    "rpc": "RPC",
    "lan": "LAN",
    "wan": "WAN",
    "ca": "CA",
    "tls": "TLS",
    "acl": "ACL",
    "acls": "ACLs",
    "kv": "KV",
    "json": "JSON",
    "ttl": "TTL",
    "tcp": "TCP",
}
_NAME_OVERRIDES = {
    "tags": "Tags",
    "rpc_rate_limit": "RPCRateLimit",
    "alias_node": "AliasNode",
}


def consul_name(field: str) -> str:
    """Consul's CamelCase name for one of our snake_case field names."""
    if field in _NAME_OVERRIDES:
        return _NAME_OVERRIDES[field]
    return "".join(_ACRONYMS.get(part, part[:1].upper() + part[1:]) for part in field.split("_"))


def _is_secret(name: str) -> bool:
    n = name.lower()
    return "key" in n or "token" in n or "secret" in n


def _fmt_addr(a: Addr, scheme: str) -> str:
    return f"{scheme}://{join_host_port(*a)}"


def _sanitize(name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    if meta.get("duration") and isinstance(value, int | float):
        return format_duration(float(value))
    if meta.get("addr"):
        scheme = meta["addr"]
        if value is None:
            return ""
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return _fmt_addr(value, scheme)
        return [_fmt_addr(v, scheme) for v in value]
    if isinstance(value, str):
        return "hidden" if _is_secret(name) else value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # Go's rate.Inf is math.MaxFloat64
        return value if math.isfinite(value) else sys.float_info.max
    if value is None:
        return None
    if attrs.has(type(value)):
        return sanitize_attrs(value)
    if isinstance(value, Mapping):
        return {str(k): _sanitize(str(k), v, {}) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_sanitize(name, v, {}) for v in value]
    return str(value)


def sanitize_attrs(obj: Any) -> dict[str, Any]:
    """Consul-style sanitized dict of an attrs instance."""
    out: dict[str, Any] = {}
    for f in attrs.fields(type(obj)):
        name = f.metadata.get("consul", consul_name(f.name))
        out[name] = _sanitize(name, getattr(obj, f.name), f.metadata)
    return out


@attrs.frozen
class ServiceAddress:
    address: str = ""
    port: int = 0


@attrs.frozen
class CheckDefinition:
    """A health check: from config (node-level or inside a service) and, decoded and validated
    by ``wanfedtx.local.definitions.decode_check``, the agent's local check (the one check
    definition type of the project)."""

    id: str = ""
    name: str = ""
    notes: str = ""
    service_id: str = ""
    token: str = ""
    status: str = ""
    script_args: tuple[str, ...] = ()
    http: str = ""
    method: str = ""
    body: str = ""
    header: Mapping[str, str | Sequence[str]] = attrs.field(factory=dict)
    tcp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    alias_node: str = ""
    alias_service: str = ""
    interval: float = attrs.field(default=0.0, metadata=_DUR)
    timeout: float = attrs.field(default=0.0, metadata=_DUR)
    ttl: float = attrs.field(default=0.0, metadata={"duration": True, "consul": "TTL"})
    deregister_critical_service_after: float = attrs.field(default=0.0, metadata=_DUR)
    success_before_passing: int = 0
    failures_before_critical: int = 0


@attrs.frozen
class ServiceDefinition:
    """A service registered from config (``service``/``services`` blocks)."""

    kind: str = ""
    id: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: Mapping[str, ServiceAddress] = attrs.field(factory=dict)
    meta: Mapping[str, str] = attrs.field(factory=dict)
    port: int = 0
    enable_tag_override: bool = False
    token: str = ""
    weights_passing: int = attrs.field(default=1, metadata={"consul": "WeightsPassing"})
    weights_warning: int = attrs.field(default=1, metadata={"consul": "WeightsWarning"})
    checks: tuple[CheckDefinition, ...] = ()


@attrs.frozen
class ACLTokens:
    initial_management: str = attrs.field(default="", metadata={"consul": "ACLMasterToken"})
    agent: str = attrs.field(default="", metadata={"consul": "ACLAgentToken"})
    agent_recovery: str = attrs.field(default="", metadata={"consul": "ACLAgentMasterToken"})
    default: str = attrs.field(default="", metadata={"consul": "ACLDefaultToken"})
    replication: str = attrs.field(default="", metadata={"consul": "ACLReplicationToken"})


@attrs.frozen
class GossipConfig:
    gossip_interval: float = attrs.field(metadata=_DUR)
    gossip_nodes: int
    probe_interval: float = attrs.field(metadata=_DUR)
    probe_timeout: float = attrs.field(metadata=_DUR)
    suspicion_mult: int
    retransmit_mult: int


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    """Everything the agent runs with, built from defaults, files and flags."""

    # identity
    datacenter: str
    primary_datacenter: str
    node_name: str
    node_id: str = attrs.field(metadata={"consul": "NodeID"})
    node_meta: Mapping[str, str]
    server_mode: bool
    bootstrap: bool
    bootstrap_expect: int
    dev_mode: bool
    data_dir: str
    dns_domain: str
    version: str
    revision: str

    # addresses and ports
    bind_addr: str
    advertise_addr_lan: str
    advertise_addr_wan: str
    client_addrs: tuple[str, ...]
    tagged_addresses: Mapping[str, str]
    dns_port: int
    http_port: int
    https_port: int
    grpc_port: int
    server_port: int
    serf_port_lan: int
    serf_port_wan: int
    dns_addrs: tuple[Addr, ...] = attrs.field(metadata=_TCP)
    http_addrs: tuple[Addr, ...] = attrs.field(metadata=_TCP)
    https_addrs: tuple[Addr, ...] = attrs.field(metadata=_TCP)
    grpc_addrs: tuple[Addr, ...] = attrs.field(metadata=_TCP)
    rpc_bind_addr: Addr = attrs.field(metadata=_TCP)
    rpc_advertise_addr: Addr = attrs.field(metadata=_TCP)
    serf_bind_addr_lan: Addr = attrs.field(metadata=_TCP)
    serf_bind_addr_wan: Addr | None = attrs.field(metadata=_TCP)
    serf_advertise_addr_lan: Addr = attrs.field(metadata=_TCP)
    serf_advertise_addr_wan: Addr | None = attrs.field(metadata=_TCP)

    # joining
    retry_join_lan: tuple[str, ...]
    retry_join_wan: tuple[str, ...]
    start_join_addrs_lan: tuple[str, ...]
    start_join_addrs_wan: tuple[str, ...]
    retry_join_interval_lan: float = attrs.field(metadata=_DUR)
    retry_join_interval_wan: float = attrs.field(metadata=_DUR)
    retry_join_max_attempts_lan: int
    retry_join_max_attempts_wan: int
    rejoin_after_leave: bool
    leave_on_term: bool
    skip_leave_on_int: bool

    # connect and WAN federation via mesh gateways
    connect_enabled: bool
    connect_mesh_gateway_wan_federation_enabled: bool = attrs.field(
        metadata={"consul": "ConnectMeshGatewayWANFederationEnabled"}
    )
    connect_ca_provider: str
    #: ``connect.ca_config`` under the reference's names (``LeafCertTTL``, ...), raw values.
    connect_ca_config: Mapping[str, Any] = attrs.field(
        factory=dict, metadata={"consul": "ConnectCAConfig"}
    )
    primary_gateways: tuple[str, ...]
    primary_gateways_interval: float = attrs.field(metadata=_DUR)

    # TLS
    ca_file: str
    ca_path: str
    cert_file: str
    key_file: str
    verify_incoming: bool
    verify_incoming_rpc: bool
    verify_incoming_https: bool
    verify_outgoing: bool
    verify_server_hostname: bool
    tls_min_version: str

    # gossip encryption and gossip tuning
    encrypt_key: str
    encrypt_verify_incoming: bool
    encrypt_verify_outgoing: bool
    gossip_lan: GossipConfig
    gossip_wan: GossipConfig

    # node id
    disable_host_node_id: bool = attrs.field(metadata={"consul": "DisableHostNodeID"})

    # logging
    log_level: str
    log_json: bool
    log_file: str = ""
    log_rotate_bytes: int = 0
    log_rotate_duration: float = attrs.field(default=0.0, metadata=_DUR)
    log_rotate_max_files: int = 0

    # limits and performance
    rpc_handshake_timeout: float = attrs.field(metadata=_DUR)
    https_handshake_timeout: float = attrs.field(metadata=_DUR)
    http_max_conns_per_client: int
    rpc_max_conns_per_client: int
    rpc_rate_limit: float
    rpc_max_burst: int
    kv_max_value_size: int
    txn_max_req_len: int
    raft_max_entry_size: int
    raft_partial_frame_budget: int
    raft_frame_timeout: float = attrs.field(metadata=_DUR)
    http_max_request_body: int
    http_read_header_timeout: float = attrs.field(metadata=_DUR)
    raft_multiplier: int
    leave_drain_time: float = attrs.field(metadata=_DUR)
    rpc_hold_timeout: float = attrs.field(metadata=_DUR)
    raft_protocol: int
    rpc_protocol: int = attrs.field(metadata={"consul": "RPCProtocol"})

    # ACLs (accepted and kept; enforcement comes with the ACL system)
    acls_enabled: bool = attrs.field(metadata={"consul": "ACLsEnabled"})
    acl_default_policy: str
    acl_down_policy: str
    acl_policy_ttl: float = attrs.field(metadata=_DUR)
    acl_token_ttl: float = attrs.field(metadata=_DUR)
    acl_role_ttl: float = attrs.field(metadata=_DUR)
    acl_enable_token_persistence: bool
    acl_enable_key_list_policy: bool
    acl_token_replication: bool
    acl_tokens: ACLTokens

    # local services and checks
    services: tuple[ServiceDefinition, ...]
    checks: tuple[CheckDefinition, ...]

    @property
    def domain(self) -> str:
        """The DNS domain without its trailing dot, as used in SNI names (``consul``)."""
        return self.dns_domain.rstrip(".")

    def tls_settings(self) -> TLSSettings:
        """The TLS options for ``wanfedtx.tls.configurator.TLSConfigurator``."""
        from wanfedtx.tls.configurator import TLSSettings

        return TLSSettings(
            ca_file=self.ca_file or None,
            ca_path=self.ca_path or None,
            cert_file=self.cert_file or None,
            key_file=self.key_file or None,
            verify_incoming=self.verify_incoming,
            verify_incoming_rpc=self.verify_incoming_rpc,
            verify_outgoing=self.verify_outgoing,
            verify_server_hostname=self.verify_server_hostname,
            domain=self.domain,
            node_name=self.node_name,
            datacenter=self.datacenter,
            tls_min_version=self.tls_min_version,
        )

    def sanitized(self) -> dict[str, Any]:
        """This config as Consul's ``Sanitized()`` renders it (``DebugConfig``)."""
        out = sanitize_attrs(self)
        # Consul flattens nested groups into prefixed names.
        for group in ("GossipLAN", "GossipWAN"):
            nested = out.pop(group)
            for k, v in nested.items():
                out[group + k] = v
        tokens = out.pop("ACLTokens")
        out.update(tokens)
        return dict(sorted(out.items()))
