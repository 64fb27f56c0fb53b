# -*- test-case-name: tests.unit.config.test_config_fuzz,tests.unit.config.test_config_loading -*-
"""The keys a config file may set, their types, and decoding of a parsed source against them.

``SCHEMA`` lists every accepted key (Consul's snake_case names). ``decode(obj, source)`` walks a
parsed ``tree.Obj`` and returns plain Python data (dicts, lists, scalars) plus the origin (source
and line) of every value; it raises ``SchemaError`` for unknown keys (``invalid config key
connect.foo``), wrong types (mapstructure's ``'ports.http' expected type 'int', got unconvertible
type 'string'``), bad durations (``limits.rpc_handshake_timeout: invalid duration: "5x": time:
unknown unit "x" in duration "5x"``), bad templates, and repeats of non-repeatable blocks.

Consul's rule for blocks (its ``patchSliceOfMaps``/``HookWeakDecodeFromSlice``): HCL yields every
block as a list of maps; a key that is not repeatable takes a list of exactly one map and collapses
it to that map, more than one is an error; repeatable keys (``services``, ``checks``,
``service.checks``, ``services.checks``) keep every block in order. JSON files use the same rule
(``"service": [{...}, {...}]`` is rejected, ``"services": [...]`` is fine).

``merge(a, b)`` merges two decoded sources the way Consul's ``Merge`` does: later scalars win, lists
concatenate, maps and blocks merge key by key (a map of blocks, such as ``tagged_addresses``,
replaces whole entries).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from wanfedtx.config import sockaddr
from wanfedtx.config.compat import IGNORED_TELEMETRY, IGNORED_TOP_LEVEL, plain_value
from wanfedtx.config.durations import DurationError, parse_duration_ns
from wanfedtx.config.errors import SchemaError, TemplateError
from wanfedtx.config.tree import Item, Obj

Origins = dict[str, tuple[str, int]]


@attrs.frozen
class Field:
    """One key: its kind, a sub-schema for blocks, and whether the value may be a template."""

    kind: str  # str int bool float dur strlist strmap block blocklist mapof ignored
    sub: Mapping[str, Field] | None = None
    template: bool = False
    doc: str = ""

    @property
    def fields(self) -> Mapping[str, Field]:
        """The sub-schema of a block kind (a schema-table bug if missing, never user input)."""
        if self.sub is None:
            raise SchemaError(f"config schema: a {self.kind} field has no sub-schema")
        return self.sub


def S(doc: str = "", template: bool = False) -> Field:
    return Field("str", doc=doc, template=template)


def I(doc: str = "") -> Field:  # noqa: E743 - short constructor names keep the table readable
    return Field("int", doc=doc)


def B(doc: str = "") -> Field:
    return Field("bool", doc=doc)


def F(doc: str = "") -> Field:
    return Field("float", doc=doc)


def D(doc: str = "") -> Field:
    return Field("dur", doc=doc)


def L(doc: str = "", template: bool = False) -> Field:
    return Field("strlist", doc=doc, template=template)


def M(doc: str = "") -> Field:
    return Field("strmap", doc=doc)


def X(doc: str = "Consul key that does not apply here; accepted with a warning.") -> Field:
    """A Consul key that does not apply to wanfed: any value is accepted and ignored, and the
    loader names every such key in one warning (a misspelt key is still refused)."""
    return Field("ignored", doc=doc)


def Blk(sub: Mapping[str, Field], doc: str = "") -> Field:
    return Field("block", sub=sub, doc=doc)


def BlkList(sub: Mapping[str, Field], doc: str = "") -> Field:
    return Field("blocklist", sub=sub, doc=doc)


CHECK: dict[str, Field] = {
    "id": S("Check ID (default: the name)."),
    "check_id": S("Alias of id."),
    "name": S("Check name."),
    "notes": S("Free text for humans."),
    "service_id": S("Service the check belongs to (node check if empty)."),
    "token": S("ACL token for this check."),
    "status": S("Initial status: passing, warning or critical."),
    "args": L("Script check arguments (kept; script checks are not run)."),
    "http": S("HTTP check URL."),
    "method": S("HTTP check method."),
    "body": S("HTTP check body."),
    "header": Field("strmap", doc="HTTP check headers (one value per header)."),
    "tcp": S("TCP check address host:port."),
    "grpc": S("gRPC check target."),
    "grpc_use_tls": B("Use TLS for the gRPC check."),
    "tls_server_name": S("SNI for HTTP/gRPC checks."),
    "tls_skip_verify": B("Skip certificate verification for HTTP/gRPC checks."),
    "alias_node": S("Alias check: node."),
    "alias_service": S("Alias check: service."),
    "interval": D("How often to run the check."),
    "timeout": D("Timeout of one run."),
    "ttl": D("TTL check period."),
    "deregister_critical_service_after": D("Deregister the service after this long critical."),
    "success_before_passing": I("Consecutive successes before passing."),
    "failures_before_critical": I("Consecutive failures before critical."),
}

SERVICE_ADDRESS: dict[str, Field] = {
    "address": S("Address."),
    "port": I("Port."),
}

SERVICE: dict[str, Field] = {
    "id": S("Service ID (default: the name)."),
    "name": S("Service name (required)."),
    "kind": S('Service kind: "" (typical), "connect-proxy", "mesh-gateway", ...'),
    "tags": L("Tags."),
    "address": S("Service address (default: the node address)."),
    "tagged_addresses": Field(
        "mapof", sub=SERVICE_ADDRESS, doc="Named addresses, e.g. lan / wan {address, port}."
    ),
    "meta": M('Key/value metadata; consul-wan-federation = "1" marks a federation gateway.'),
    "port": I("Service port."),
    "enable_tag_override": B("Let the catalog override tags."),
    "token": S("ACL token for this service."),
    "weights": Blk(
        {"passing": I("Weight when passing."), "warning": I("Weight when warning.")},
        "DNS SRV weights.",
    ),
    "check": Blk(CHECK, "One check of this service (not repeatable)."),
    "checks": BlkList(CHECK, "Checks of this service (repeatable)."),
}

PORTS: dict[str, Field] = {
    "dns": I("DNS port (-1 disables)."),
    "http": I("HTTP API port (-1 disables)."),
    "https": I("HTTPS API port (-1 disables)."),
    "grpc": I("gRPC (xDS) port (-1 disables)."),
    "serf_lan": I("Serf LAN port."),
    "serf_wan": I("Serf WAN port (-1 disables)."),
    "server": I("Server RPC port."),
    "proxy_min_port": I("Lowest port for managed proxies."),
    "proxy_max_port": I("Highest port for managed proxies."),
    "sidecar_min_port": I("Lowest port for sidecar services."),
    "sidecar_max_port": I("Highest port for sidecar services."),
    "expose_min_port": I("Lowest port for exposed check paths."),
    "expose_max_port": I("Highest port for exposed check paths."),
}

ADDRESSES: dict[str, Field] = {
    "dns": S("Bind address(es) of the DNS server (default: client_addr).", template=True),
    "http": S("Bind address(es) of the HTTP API (default: client_addr).", template=True),
    "https": S("Bind address(es) of the HTTPS API (default: client_addr).", template=True),
    "grpc": S("Bind address(es) of the gRPC server (default: client_addr).", template=True),
}

LIMITS: dict[str, Field] = {
    "rpc_handshake_timeout": D("Deadline for the first byte and TLS handshake on :8300."),
    "https_handshake_timeout": D("Deadline for the HTTPS handshake."),
    "http_max_conns_per_client": I("Concurrent HTTP connections per client IP."),
    "rpc_max_conns_per_client": I("Concurrent RPC connections per client IP."),
    "rpc_rate": F("RPC requests per second a client agent may make (-1: unlimited)."),
    "rpc_max_burst": I("RPC burst size."),
    "kv_max_value_size": I("Largest KV value in bytes."),
    "txn_max_req_len": I("Largest transaction request in bytes."),
    "raft_max_entry_size": I("Largest raft log entry in bytes; raft frames are capped from it."),
    "raft_partial_frame_budget": I("Bytes of unfinished raft frames, all inbound connections."),
    "raft_frame_timeout": D("Deadline to receive one raft frame whole, from its first byte."),
    "http_max_request_body": I("Largest catalog/agent registration request body in bytes."),
    "http_read_header_timeout": D("Deadline for an HTTP request's headers (slowloris bound)."),
}

ACL_TOKENS: dict[str, Field] = {
    "master": S("Bootstrap management token (legacy name)."),
    "initial_management": S("Bootstrap management token."),
    "agent": S("Token for the agent's own requests."),
    "agent_master": S("Agent recovery token (legacy name)."),
    "agent_recovery": S("Agent recovery token."),
    "default": S("Token used when a request has none."),
    "replication": S("Token for ACL/federation-state replication."),
}

ACL: dict[str, Field] = {
    "enabled": B("Enable ACLs: tokens and policies checked on every HTTP and RPC path."),
    "default_policy": S("allow or deny."),
    "down_policy": S("allow, deny, extend-cache, async-cache."),
    "policy_ttl": D("Policy cache TTL."),
    "token_ttl": D("Token cache TTL."),
    "role_ttl": D("Role cache TTL."),
    "enable_token_persistence": B("Persist tokens set through the API."),
    "enable_key_list_policy": B("Enforce list permission on KV listing."),
    "enable_token_replication": B("Replicate tokens to secondary DCs."),
    "tokens": Blk(ACL_TOKENS, "Agent tokens (shown as hidden in agent/self)."),
}

CA_CONFIG: dict[str, Field] = {
    "cluster_id": S("The cluster ID (a UUID) the primary's CA uses; generated when unset."),
    "private_key": S("PEM private key of a root given by the operator (with root_cert)."),
    "root_cert": S("PEM root certificate given by the operator (needs private_key)."),
    "rotation_period": D("Kept as Consul does; it has no effect."),
    "leaf_cert_ttl": D("Lifetime of leaf certificates (default 72h)."),
    "intermediate_cert_ttl": D("Lifetime of secondary intermediates (default 8760h)."),
    "csr_max_per_second": F("Leaf signings per second a server allows (default 50)."),
    "csr_max_concurrent": I("Concurrent leaf signings a server allows (0: no limit)."),
    "private_key_type": S('CA key type: "ec" (default) only.'),
    "private_key_bits": I("CA key size: 256 (P-256, the default) only."),
}

CONNECT: dict[str, Field] = {
    "enabled": B("Enable Connect (service mesh); required for WAN federation via gateways."),
    "enable_mesh_gateway_wan_federation": B(
        "Funnel all cross-datacenter server traffic through mesh gateways."
    ),
    "ca_provider": S('Connect CA provider: "consul" (the built-in CA, the default) only.'),
    "ca_config": Blk(CA_CONFIG, "Settings of the built-in CA provider (first bootstrap only)."),
}

GOSSIP: dict[str, Field] = {
    "gossip_interval": D("Time between gossip rounds."),
    "gossip_nodes": I("Nodes gossiped to per round."),
    "probe_interval": D("Time between failure-detection probes."),
    "probe_timeout": D("Probe ack timeout."),
    "suspicion_mult": I("Suspicion timeout multiplier."),
    "retransmit_mult": I("Broadcast retransmit multiplier."),
}

PERFORMANCE: dict[str, Field] = {
    "raft_multiplier": I("Scales raft timing (1 fastest, 10 slowest)."),
    "leave_drain_time": D("Time to drain RPCs on leave."),
    "rpc_hold_timeout": D("How long to retry an RPC during leader elections."),
}

# Consul's telemetry block: the Prometheus format is always served at /v1/agent/metrics (so its
# keys are accepted quietly); the other sinks and filters do not apply here.
TELEMETRY: dict[str, Field] = {
    "prometheus_retention_time": D("Accepted; the Prometheus format is always served."),
    "disable_hostname": B("Accepted; gauges never carry the host name here."),
    **{k: X() for k in IGNORED_TELEMETRY},
}

SCHEMA: dict[str, Field] = {
    "datacenter": S("Datacenter name ([a-z0-9_-]+)."),
    "primary_datacenter": S("Authoritative datacenter (default: datacenter)."),
    "node_name": S("Node name (default: the host name)."),
    "node_id": S("Node UUID (default: persisted in data_dir/node-id)."),
    "node_meta": M("Node metadata."),
    "server": B("Run as a server."),
    "bootstrap": B("Bootstrap a single server."),
    "bootstrap_expect": I("Servers to wait for before bootstrapping."),
    "data_dir": S("State directory (required unless -dev)."),
    "bind_addr": S("Cluster bind address (template allowed).", template=True),
    "advertise_addr": S("LAN advertise address (template allowed).", template=True),
    "advertise_addr_wan": S("WAN advertise address (template allowed).", template=True),
    "client_addr": S("Bind address(es) of client interfaces (template allowed).", template=True),
    "serf_lan": S("Serf LAN bind address (default: bind_addr).", template=True),
    "serf_wan": S("Serf WAN bind address (default: bind_addr).", template=True),
    "addresses": Blk(ADDRESSES, "Per-interface bind addresses of the client listeners."),
    "ports": Blk(PORTS, "Listener ports; -1 (or 0) disables one."),
    "domain": S("DNS domain."),
    "retry_join": L("LAN addresses to join, with retries.", template=True),
    "retry_join_wan": L("WAN addresses to join, with retries.", template=True),
    "start_join": L("LAN addresses to join at start.", template=True),
    "start_join_wan": L("WAN addresses to join at start.", template=True),
    "retry_interval": D("Time between LAN join attempts."),
    "retry_interval_wan": D("Time between WAN join attempts."),
    "retry_max": I("LAN join attempts (0: forever)."),
    "retry_max_wan": I("WAN join attempts (0: forever)."),
    "rejoin_after_leave": B("Rejoin after a previous leave."),
    "leave_on_terminate": B("Leave gracefully on SIGTERM."),
    "skip_leave_on_interrupt": B("Do not leave on SIGINT."),
    "primary_gateways": L("Mesh gateways of the primary DC (host:port).", template=True),
    "primary_gateways_interval": D("Time between primary-gateway discovery rounds."),
    "ca_file": S("CA bundle (PEM)."),
    "ca_path": S("Directory of CA certificates."),
    "cert_file": S("Agent certificate (PEM)."),
    "key_file": S("Agent private key (PEM)."),
    "verify_incoming": B("Require and verify client certificates (RPC and HTTPS)."),
    "verify_incoming_rpc": B("Require and verify client certificates on RPC."),
    "verify_incoming_https": B("Require and verify client certificates on HTTPS."),
    "verify_outgoing": B("Use TLS for outgoing RPC and verify the server."),
    "verify_server_hostname": B("Check server.<dc>.<domain> in server certificates."),
    "tls_min_version": S("Lowest TLS version: tls12 or tls13 (tls10/tls11 are refused)."),
    "encrypt": S("Gossip encryption key (base64)."),
    "encrypt_verify_incoming": B("Reject unencrypted incoming gossip."),
    "encrypt_verify_outgoing": B("Encrypt outgoing gossip."),
    "disable_host_node_id": B("Use a random node ID rather than one derived from the host."),
    "log_level": S("trace, debug, info, warn, err."),
    "log_json": B("Log JSON lines."),
    "log_file": S("Also log to this file (dir/name; a trailing / means dir/wanfed.log)."),
    "log_rotate_bytes": I("Rotate log_file after this many bytes (0: no size limit)."),
    "log_rotate_duration": D("Rotate log_file after this long (default 24h)."),
    "log_rotate_max_files": I("Older log files to keep: 0 all, N the newest N, -1 none."),
    "telemetry": Blk(TELEMETRY, "Consul's telemetry settings (Prometheus only here)."),
    **{k: X() for k in IGNORED_TOP_LEVEL},
    "connect": Blk(CONNECT, "Connect (service mesh) settings."),
    "acl": Blk(
        ACL,
        "ACL settings (tokens, policies, default and down policies).",
    ),
    "limits": Blk(LIMITS, "Rate and connection limits, handshake deadlines."),
    "performance": Blk(PERFORMANCE, "Raft and RPC timing."),
    "gossip_lan": Blk(GOSSIP, "LAN gossip (memberlist) tuning."),
    "gossip_wan": Blk(GOSSIP, "WAN gossip (memberlist) tuning."),
    "raft_protocol": I("Raft protocol version (3)."),
    "protocol": I("Consul RPC protocol version (2)."),
    "service": Blk(SERVICE, "One service (not repeatable; use services for several)."),
    "services": BlkList(SERVICE, "Services (repeatable)."),
    "check": Blk(CHECK, "One node check (not repeatable; use checks for several)."),
    "checks": BlkList(CHECK, "Node checks (repeatable)."),
}


def _gotype(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Obj):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if v is None:
        return "nil"
    return type(v).__name__


_GOWANT = {
    "str": "string",
    "int": "int",
    "bool": "bool",
    "float": "float64",
    "dur": "string",
    "strlist": "[]string",
    "strmap": "map[string]string",
    "block": "struct",
    "blocklist": "[]struct",
    "mapof": "map[string]struct",
}


class _Decoder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.origins: Origins = {}

    def type_error(self, path: str, kind: str, value: Any, line: int) -> SchemaError:
        return SchemaError(
            f"'{path}' expected type '{_GOWANT[kind]}', got unconvertible type '{_gotype(value)}'",
            source=self.source,
            line=line,
            key=path,
        )

    def objects(self, path: str, value: Any, line: int, kind: str) -> list[tuple[Obj, int]]:
        """The maps a block-valued item holds (an HCL block is a list of one map)."""
        if isinstance(value, Obj):
            return [(value, line)]
        if isinstance(value, list) and all(isinstance(v, Obj) for v in value):
            return [(v, v[0].line if v else line) for v in value]
        raise self.type_error(path, kind, value, line)

    def scalar(self, path: str, f: Field, value: Any, line: int) -> Any:
        k = f.kind
        if k in ("str", "dur"):
            if not isinstance(value, str):
                raise self.type_error(path, k, value, line)
            value = str(value)
            if k == "dur":
                try:
                    parse_duration_ns(value)
                except DurationError as e:
                    raise SchemaError(
                        f"{path}: invalid duration: {_goquote(value)}: {e}",
                        source=self.source,
                        line=line,
                        key=path,
                    ) from None
            if f.template:
                self.check_template(path, value, line)
            return value
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.type_error(path, k, value, line)
            if isinstance(value, float):
                if not value.is_integer():
                    raise self.type_error(path, k, value, line)
                value = int(value)
            if not -(1 << 63) <= value < (1 << 63):
                raise SchemaError(
                    f"'{path}': value {value} overflows int",
                    source=self.source,
                    line=line,
                    key=path,
                )
            return value
        if k == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.type_error(path, k, value, line)
            return float(value)
        if k == "bool":
            if not isinstance(value, bool):
                raise self.type_error(path, k, value, line)
            return value
        if k == "strlist":
            if not isinstance(value, list) or isinstance(value, Obj):
                raise self.type_error(path, k, value, line)
            out = []
            for i, v in enumerate(value):
                if not isinstance(v, str):
                    raise SchemaError(
                        f"'{path}[{i}]' expected type 'string', got unconvertible type "
                        f"'{_gotype(v)}'",
                        source=self.source,
                        line=line,
                        key=f"{path}[{i}]",
                    )
                if f.template:
                    self.check_template(f"{path}[{i}]", v, line)
                out.append(str(v))
            return out
        raise AssertionError(k)  # pragma: no cover

    def check_template(self, path: str, value: str, line: int) -> None:
        try:
            sockaddr.check_template(value)
        except TemplateError as e:
            raise SchemaError(
                f"{path}: error parsing {_goquote(value)}: {e.message}",
                source=self.source,
                line=line,
                key=path,
            ) from None

    def obj(self, obj: Obj, schema: Mapping[str, Field], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for item in obj:
            key = item.key
            path = prefix + key
            f = schema.get(key)
            if f is None:
                raise SchemaError(
                    f"invalid config key {path}", source=self.source, line=item.line, key=path
                )
            k = f.kind
            if item.value is None:  # JSON null leaves the key unset, as in Consul
                continue
            if k == "ignored":
                out[key] = plain_value(item.value)
                self.origins[path] = (self.source, item.line)
            elif k == "block":
                objs = self.objects(path, item.value, item.line, k)
                counts[key] = counts.get(key, 0) + len(objs)
                if counts[key] > 1:
                    raise self.repeat_error(path, key, item.line)
                if objs:
                    out[key] = self.obj(objs[0][0], f.fields, path + ".")
                self.origins[path] = (self.source, item.line)
            elif k == "blocklist":
                lst = out.setdefault(key, [])
                for o, _line in self.objects(path, item.value, item.line, k):
                    lst.append(self.obj(o, f.fields, f"{path}[{len(lst)}]."))
                self.origins[path] = (self.source, item.line)
            elif k == "strmap":
                objs = self.objects(path, item.value, item.line, k)
                counts[key] = counts.get(key, 0) + len(objs)
                if counts[key] > 1:
                    raise self.repeat_error(path, key, item.line)
                m: dict[str, str] = {}
                for o, _line in objs:
                    for kv in o:
                        if not isinstance(kv.value, str):
                            raise SchemaError(
                                f"'{path}[{kv.key}]' expected type 'string', got unconvertible "
                                f"type '{_gotype(kv.value)}'",
                                source=self.source,
                                line=kv.line,
                                key=f"{path}.{kv.key}",
                            )
                        m[kv.key] = str(kv.value)
                out[key] = m
                self.origins[path] = (self.source, item.line)
            elif k == "mapof":
                objs = self.objects(path, item.value, item.line, k)
                counts[key] = counts.get(key, 0) + len(objs)
                if counts[key] > 1:
                    raise self.repeat_error(path, key, item.line)
                mo: dict[str, Any] = {}
                for o, _line in objs:
                    for entry in o:
                        sub_objs = self.objects(
                            f"{path}.{entry.key}", entry.value, entry.line, "block"
                        )
                        if len(sub_objs) > 1:
                            raise self.repeat_error(f"{path}.{entry.key}", entry.key, entry.line)
                        if sub_objs:  # `lan = []` leaves the entry unset, as an empty block does
                            mo[entry.key] = self.obj(
                                sub_objs[0][0], f.fields, f"{path}.{entry.key}.")
                out[key] = mo
                self.origins[path] = (self.source, item.line)
            else:
                out[key] = self.scalar(path, f, item.value, item.line)
                self.origins[path] = (self.source, item.line)
        return out

    def repeat_error(self, path: str, key: str, line: int) -> SchemaError:
        hint = ""
        if key in ("service", "check"):
            hint = f"; use '{key}s' to define several"
        return SchemaError(
            f"{path}: more than one '{key}' block; '{key}' is not repeatable{hint}",
            source=self.source,
            line=line,
            key=path,
        )


def _goquote(s: str) -> str:
    """Go's %q for the common cases."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def decode(obj: Obj, source: str) -> tuple[dict[str, Any], Origins]:
    """Decode one parsed source against ``SCHEMA``; return its data and value origins."""
    d = _Decoder(source)
    data = d.obj(obj, SCHEMA, "")
    # Consul appends a single 'service' / 'check' to the lists before merging sources, so that
    # one file's 'service' does not clobber another's.
    if "service" in data:
        data.setdefault("services", []).append(data.pop("service"))
    if "check" in data:
        data.setdefault("checks", []).append(data.pop("check"))
    return data, d.origins


def merge(
    a: Mapping[str, Any], b: Mapping[str, Any], schema: Mapping[str, Field] = SCHEMA
) -> dict[str, Any]:
    """Merge ``b`` over ``a`` as Consul merges config sources."""
    out = dict(a)
    for key, bv in b.items():
        f = schema.get(key)
        if key not in out or f is None:
            out[key] = bv
            continue
        av = out[key]
        if f.kind in ("strlist", "blocklist"):
            out[key] = list(av) + list(bv)
        elif f.kind == "block":
            out[key] = merge(av, bv, f.fields)
        elif f.kind in ("strmap", "mapof"):
            out[key] = {**av, **bv}
        else:
            out[key] = bv
    return out


def walk_fields(schema: Mapping[str, Field] = SCHEMA, prefix: str = "") -> list[tuple[str, Field]]:
    """Every key path of the schema, depth first (for documentation and tests)."""
    out: list[tuple[str, Field]] = []
    for key, f in schema.items():
        out.append((prefix + key, f))
        if f.sub is not None:
            sep = "[]." if f.kind == "blocklist" else (".<name>." if f.kind == "mapof" else ".")
            out.extend(walk_fields(f.sub, prefix + key + sep))
    return out


__all__ = ["SCHEMA", "Field", "Item", "Obj", "decode", "merge", "walk_fields"]
