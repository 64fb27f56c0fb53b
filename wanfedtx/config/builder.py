# -*- test-case-name: tests.unit.config -*-
"""Loading, merging, building and validating the configuration (Consul's ``config.Builder``).

``load(LoadOptions)`` reads the sources in Consul's order and returns a ``LoadResult`` holding
the ``RuntimeConfig`` and the warnings:

1. the defaults (``defaults.DEFAULT_HCL``), then ``defaults.DEV_HCL`` with ``-dev``;
2. list-valued command-line flags (so that they come *before* the files' lists, as in Consul);
3. every ``-config-file`` / ``-config-dir`` path in the order given; a directory contributes its
   ``.hcl`` and ``.json`` files in lexical order (sub-directories are skipped, other files are
   skipped with a warning);
4. the other command-line flags, which therefore override the files;
5. ``-hcl`` fragments.

Each source is parsed (``hclparse``/``jsonparse``), decoded against the schema (unknown keys and
wrong types fail with file, line and key path) and merged (``schema.merge``). ``build`` turns the
merged data into a ``RuntimeConfig`` (templates, ports, addresses, services) and ``validate``
runs Consul's semantic checks, including the seven WAN-federation errors of the reference, in
Consul's order.

Reading and parsing sources lives in ``config/sources.py``; the semantic checks are the
``Validation`` mixin of ``Builder`` in ``config/validate.py``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from wanfedtx import __version__
from wanfedtx.config import sockaddr
from wanfedtx.config.compat import ignored_keys_warning
from wanfedtx.config.connect_ca import ConnectCASection
from wanfedtx.config.defaults import DEFAULT_HCL, DEV_HCL
from wanfedtx.config.durations import format_duration, parse_duration_ns
from wanfedtx.config.errors import ConfigError, TemplateError, ValidationError
from wanfedtx.config.runtime import (
    ACLTokens,
    Addr,
    CheckDefinition,
    GossipConfig,
    RuntimeConfig,
    ServiceAddress,
    ServiceDefinition,
)
from wanfedtx.config.schema import SCHEMA, Origins, merge
from wanfedtx.config.sources import (
    Source,
    _leaf_paths,
    parse_source,
    sources_from_path,
    split_flags,
)
from wanfedtx.config.validate import Validation
from wanfedtx.state.validate import service_meta_problem

REVISION = "wanfedtx"
_SERVICE_KINDS = ("", "connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway")
META_WAN_FEDERATION_KEY = "consul-wan-federation"


@attrs.frozen
class LoadOptions:
    """What the command line says about where config comes from."""

    config_files: Sequence[str] = ()
    config_format: str | None = None
    dev: bool = False
    flags: Mapping[str, Any] = attrs.field(factory=dict)
    hcl: Sequence[str] = ()
    interfaces: sockaddr.InterfaceProvider = sockaddr.system_interfaces
    hostname: Callable[[], str] = socket.gethostname


@attrs.frozen
class LoadResult:
    runtime: RuntimeConfig
    warnings: tuple[str, ...]
    sources: tuple[str, ...]



def load(opts: LoadOptions) -> LoadResult:
    """Read, merge, build and validate; raise ``ConfigError`` with one clear line on failure."""
    if opts.config_format not in (None, "", "hcl", "json"):
        raise ConfigError("config: -config-format must be either 'hcl' or 'json'")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    origins: Origins = {}
    names: list[str] = []

    def add(d: Mapping[str, Any], o: Origins, name: str) -> None:
        nonlocal data
        data = merge(data, d)
        origins.update(o)
        names.append(name)

    def add_source(src: Source) -> None:
        d, o = parse_source(src)
        add(d, o, src.name)

    add_source(Source("default", "hcl", DEFAULT_HCL))
    if opts.dev:
        add_source(Source("dev", "hcl", DEV_HCL))
    slices, values = split_flags(opts.flags)
    add(slices, {k: ("flags", 0) for k in slices}, "flags.slices")
    for path in opts.config_files:
        for src in sources_from_path(path, opts.config_format or None, warnings):
            add_source(src)
    add(values, {k: ("flags", 0) for k in _leaf_paths(values)}, "flags.values")
    for i, frag in enumerate(opts.hcl):
        add_source(Source(f"flags-{i}.hcl", "hcl", frag))
    ignored = ignored_keys_warning(data, SCHEMA)
    if ignored:
        warnings.append(ignored)
    b = Builder(data, origins, opts, warnings)
    rt = b.build()
    b.validate(rt)
    return LoadResult(rt, tuple(warnings), tuple(names))


class Builder(Validation, ConnectCASection):
    """Turns merged config data into a ``RuntimeConfig`` and validates it."""

    def __init__(
        self,
        data: Mapping[str, Any],
        origins: Origins,
        opts: LoadOptions,
        warnings: list[str],
    ) -> None:
        self.d = data
        self.origins = origins
        self.opts = opts
        self.warnings = warnings
        self._ifs: Sequence[sockaddr.IfAddr] | None = None

    # ---- helpers -------------------------------------------------------------------------
    def get(self, path: str, default: Any = None) -> Any:
        cur: Any = self.d
        for part in path.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def interfaces(self) -> Sequence[sockaddr.IfAddr]:
        if self._ifs is None:
            try:
                self._ifs = list(self.opts.interfaces())
            except OSError as e:
                raise ValidationError(f"cannot read network interfaces: {e}") from None
        return self._ifs

    def render(self, path: str, text: str) -> str:
        if not sockaddr.has_template(text):
            return text
        try:
            return sockaddr.render(text, lambda: self.interfaces())
        except TemplateError as e:
            raise self.error(f'{path}: error parsing "{text}": {e.message}', path) from None

    def duration(self, path: str, *, positive: bool = False, nonneg: bool = False) -> float:
        raw = self.get(path)
        if raw is None:
            return 0.0
        ns = parse_duration_ns(raw)  # already checked while decoding
        if positive and ns <= 0:
            raise self.error(
                f"{path} cannot be {format_duration(ns / 1e9)}. Must be positive", path
            )
        if nonneg and ns < 0:
            raise self.error(
                f"{path} cannot be {format_duration(ns / 1e9)}. Must be greater than or equal "
                "to zero",
                path,
            )
        return ns / 1e9

    def positive_int(self, path: str, default: int) -> int:
        v = self.get(path)
        n = default if v is None else int(v)
        if n <= 0:
            raise self.error(f"{path} must be a positive number of bytes, got {n}", path)
        return n

    def port(self, path: str) -> int:
        v = self.get(path)
        if v is None or v <= 0:
            return -1
        if v > 65535:
            raise self.error(f"{path}: invalid port: {v}", path)
        return int(v)

    def expand_addrs(self, path: str, raw: str | None) -> list[str]:
        if not raw:
            return []
        text = self.render(path, raw)
        out: list[str] = []
        for a in text.split():
            if a.startswith("unix://"):
                out.append(a)
                continue
            if a == "[::]":
                a = "::"
            try:
                out.append(str(ipaddress.ip_address(a)))
            except ValueError:
                raise self.error(f"{path}: invalid ip address: {a}", path) from None
        return out

    def expand_ips(self, path: str, raw: str | None) -> list[str]:
        addrs = self.expand_addrs(path, raw)
        for a in addrs:
            if a.startswith("unix://"):
                raise self.error(f"{path} cannot be a unix socket", path)
        return addrs

    def expand_first_ip(self, path: str, raw: str | None) -> str | None:
        addrs = self.expand_addrs(path, raw)
        if not addrs:
            return None
        if len(addrs) > 1:
            raise self.error(f"{path}: multiple addresses found: {' '.join(addrs)}", path)
        if addrs[0].startswith("unix://"):
            raise self.error(f"{path} cannot be a unix socket", path)
        return addrs[0]

    def expand_optional(self, path: str, values: Sequence[str] | None) -> tuple[str, ...]:
        out: list[str] = []
        for v in values or ():
            if not v:
                continue
            x = self.render(path, v)
            out.extend(x.split() if x != v else [v])
        return tuple(out)

    def detect_advertise(self, any_addr: str) -> str:
        ifs = self.interfaces()
        if ipaddress.ip_address(any_addr).version == 4:
            kind = "private IPv4"
            found = sorted(
                {
                    a.address
                    for a in ifs
                    if a.up
                    and not a.loopback
                    and a.ip.version == 4
                    and sockaddr.is_forwardable(a.ip)
                    and a.ip.is_private
                },
                key=lambda s: int(ipaddress.ip_address(s)),
            )
        else:
            kind = "public IPv6"
            found = sorted(
                {
                    a.address
                    for a in ifs
                    if a.up and a.ip.version == 6 and a.ip.is_global and not a.loopback
                }
            )
        if not found:
            raise ValidationError(f"No {kind} address found")
        if len(found) > 1:
            raise ValidationError(
                f"Multiple {kind} addresses found. Please configure one with 'bind' and/or "
                "'advertise'."
            )
        return found[0]

    # ---- build --------------------------------------------------------------------------
    def build(self) -> RuntimeConfig:
        g = self.get
        dns_port = self.port("ports.dns")
        http_port = self.port("ports.http")
        https_port = self.port("ports.https")
        grpc_port = self.port("ports.grpc")
        server_port = self.port("ports.server")
        serf_lan_port = self.port("ports.serf_lan")
        serf_wan_port = self.port("ports.serf_wan")
        if server_port <= 0:
            raise self.error("server-port must be greater than zero", "ports.server")
        if serf_lan_port <= 0:
            raise self.error("serf-lan-port must be greater than zero", "ports.serf_lan")
        for low, high in (("proxy", "proxy"), ("sidecar", "sidecar"), ("expose", "expose")):
            lo = g(f"ports.{low}_min_port", 0)
            hi = g(f"ports.{high}_max_port", 0)
            if hi < lo:
                raise self.error(
                    f"{low}_min_port must be less than {high}_max_port. To disable, set both to "
                    "zero.",
                    f"ports.{low}_min_port",
                )

        bind_addrs = self.expand_addrs("bind_addr", g("bind_addr"))
        if not bind_addrs:
            raise self.error("bind_addr cannot be empty", "bind_addr")
        if len(bind_addrs) > 1:
            raise self.error(
                "bind_addr cannot contain multiple addresses. Use 'addresses.{dns,http,https}' "
                "instead.",
                "bind_addr",
            )
        if bind_addrs[0].startswith("unix://"):
            raise self.error("bind_addr cannot be a unix socket", "bind_addr")
        bind_addr = bind_addrs[0]
        for key, label in (
            ("advertise_addr", "Advertise"),
            ("advertise_addr_wan", "Advertise WAN"),
        ):
            raw = g(key)
            if raw in ("0.0.0.0", "::", "[::]"):
                raise self.error(f"{label} address cannot be 0.0.0.0, :: or [::]", key)

        advertise = self.expand_first_ip("advertise_addr", g("advertise_addr")) or bind_addr
        if ipaddress.ip_address(advertise).is_unspecified:
            advertise = self.detect_advertise(advertise)
        advertise_wan = self.expand_first_ip("advertise_addr_wan", g("advertise_addr_wan"))
        advertise_wan = advertise_wan or advertise

        serf_bind_lan_ip = self.expand_first_ip("serf_lan", g("serf_lan")) or bind_addr
        serf_bind_wan: Addr | None = None
        serf_adv_wan: Addr | None = None
        if serf_wan_port >= 0:
            serf_bind_wan_ip = self.expand_first_ip("serf_wan", g("serf_wan")) or bind_addr
            serf_bind_wan = (serf_bind_wan_ip, serf_wan_port)
            serf_adv_wan = (advertise_wan, serf_wan_port)

        client_addrs = self.expand_ips("client_addr", g("client_addr"))
        if not client_addrs:
            self.warnings.append(
                "client_addr is empty, client services (DNS, HTTP, HTTPS, GRPC) will not be "
                "listening for connections"
            )

        def make_addrs(key: str, port: int) -> tuple[Addr, ...]:
            if port <= 0:
                return ()
            pri = self.expand_addrs(f"addresses.{key}", g(f"addresses.{key}"))
            hosts = pri or client_addrs
            out: list[Addr] = []
            for h in hosts:
                if h.startswith("unix://"):
                    raise self.error(
                        f"addresses.{key}: unix sockets are not supported by wanfed",
                        f"addresses.{key}",
                    )
                out.append((h, port))
            return tuple(out)

        datacenter = str(g("datacenter", "")).lower()
        primary_dc = str(g("primary_datacenter", "") or "").lower() or datacenter

        connect_enabled = bool(g("connect.enabled", False))
        wanfed = bool(g("connect.enable_mesh_gateway_wan_federation", False))
        if wanfed and not connect_enabled:
            raise ValidationError(
                "'connect.enable_mesh_gateway_wan_federation=true' requires 'connect.enabled=true'"
            )

        node_name = g("node_name")
        if not node_name:
            try:
                node_name = self.opts.hostname()
            except OSError as e:
                raise ValidationError(f"node_name: {e}") from None
        node_name = str(node_name).strip()

        server = bool(g("server", False))
        bootstrap = bool(g("bootstrap", False))
        bootstrap_expect = int(g("bootstrap_expect", 0))
        if bootstrap_expect == 1:
            bootstrap = True
            bootstrap_expect = 0
            self.warnings.append("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")

        services = tuple(
            self.service(s, f"services[{i}]") for i, s in enumerate(g("services", []) or [])
        )
        checks = tuple(self.check(c, f"checks[{i}]") for i, c in enumerate(g("checks", []) or []))

        rpc_rate = float(g("limits.rpc_rate", -1))
        verify_incoming = bool(g("verify_incoming", False))

        def gossip(prefix: str) -> GossipConfig:
            return GossipConfig(
                gossip_interval=self.duration(f"{prefix}.gossip_interval", positive=True),
                gossip_nodes=int(g(f"{prefix}.gossip_nodes", 0)),
                probe_interval=self.duration(f"{prefix}.probe_interval", positive=True),
                probe_timeout=self.duration(f"{prefix}.probe_timeout", positive=True),
                suspicion_mult=int(g(f"{prefix}.suspicion_mult", 0)),
                retransmit_mult=int(g(f"{prefix}.retransmit_mult", 0)),
            )

        leave_on_term = g("leave_on_terminate")
        skip_leave = g("skip_leave_on_interrupt")
        return RuntimeConfig(
            datacenter=datacenter,
            primary_datacenter=primary_dc,
            node_name=node_name,
            node_id=str(g("node_id", "") or "").lower(),
            node_meta=dict(g("node_meta", {}) or {}),
            server_mode=server,
            bootstrap=bootstrap,
            bootstrap_expect=bootstrap_expect,
            dev_mode=self.opts.dev,
            data_dir=str(g("data_dir", "") or ""),
            dns_domain=str(g("domain", "consul.")),
            version=__version__,
            revision=REVISION,
            bind_addr=bind_addr,
            advertise_addr_lan=advertise,
            advertise_addr_wan=advertise_wan,
            client_addrs=tuple(client_addrs),
            tagged_addresses={"lan": advertise, "wan": advertise_wan},
            dns_port=dns_port,
            http_port=http_port,
            https_port=https_port,
            grpc_port=grpc_port,
            server_port=server_port,
            serf_port_lan=serf_lan_port,
            serf_port_wan=serf_wan_port,
            dns_addrs=make_addrs("dns", dns_port),
            http_addrs=make_addrs("http", http_port),
            https_addrs=make_addrs("https", https_port),
            grpc_addrs=make_addrs("grpc", grpc_port),
            rpc_bind_addr=(bind_addr, server_port),
            rpc_advertise_addr=(advertise, server_port),
            serf_bind_addr_lan=(serf_bind_lan_ip, serf_lan_port),
            serf_bind_addr_wan=serf_bind_wan,
            serf_advertise_addr_lan=(advertise, serf_lan_port),
            serf_advertise_addr_wan=serf_adv_wan,
            retry_join_lan=self.expand_optional("retry_join", g("retry_join")),
            retry_join_wan=self.expand_optional("retry_join_wan", g("retry_join_wan")),
            start_join_addrs_lan=self.expand_optional("start_join", g("start_join")),
            start_join_addrs_wan=self.expand_optional("start_join_wan", g("start_join_wan")),
            retry_join_interval_lan=self.duration("retry_interval", positive=True),
            retry_join_interval_wan=self.duration("retry_interval_wan", positive=True),
            retry_join_max_attempts_lan=int(g("retry_max", 0)),
            retry_join_max_attempts_wan=int(g("retry_max_wan", 0)),
            rejoin_after_leave=bool(g("rejoin_after_leave", False)),
            leave_on_term=(not server) if leave_on_term is None else bool(leave_on_term),
            skip_leave_on_int=server if skip_leave is None else bool(skip_leave),
            connect_enabled=connect_enabled,
            connect_mesh_gateway_wan_federation_enabled=wanfed,
            connect_ca_provider=self.ca_provider(),
            connect_ca_config=self.ca_config(),
            primary_gateways=self.expand_optional("primary_gateways", g("primary_gateways")),
            primary_gateways_interval=self.duration("primary_gateways_interval", positive=True),
            ca_file=str(g("ca_file", "") or ""),
            ca_path=str(g("ca_path", "") or ""),
            cert_file=str(g("cert_file", "") or ""),
            key_file=str(g("key_file", "") or ""),
            verify_incoming=verify_incoming,
            verify_incoming_rpc=bool(g("verify_incoming_rpc", False)) or verify_incoming,
            verify_incoming_https=bool(g("verify_incoming_https", False)) or verify_incoming,
            verify_outgoing=bool(g("verify_outgoing", False)),
            verify_server_hostname=bool(g("verify_server_hostname", False)),
            tls_min_version=str(g("tls_min_version", "tls12")),
            encrypt_key=str(g("encrypt", "") or ""),
            encrypt_verify_incoming=bool(g("encrypt_verify_incoming", True)),
            encrypt_verify_outgoing=bool(g("encrypt_verify_outgoing", True)),
            gossip_lan=gossip("gossip_lan"),
            gossip_wan=gossip("gossip_wan"),
            disable_host_node_id=bool(g("disable_host_node_id", True)),
            log_level=str(g("log_level", "INFO")),
            log_json=bool(g("log_json", False)),
            log_file=str(g("log_file", "") or ""),
            log_rotate_bytes=int(g("log_rotate_bytes", 0)),
            log_rotate_duration=self.duration("log_rotate_duration", nonneg=True),
            log_rotate_max_files=int(g("log_rotate_max_files", 0)),
            rpc_handshake_timeout=self.duration("limits.rpc_handshake_timeout", nonneg=True),
            https_handshake_timeout=self.duration("limits.https_handshake_timeout", nonneg=True),
            http_max_conns_per_client=int(g("limits.http_max_conns_per_client", 200)),
            rpc_max_conns_per_client=int(g("limits.rpc_max_conns_per_client", 100)),
            rpc_rate_limit=float("inf") if rpc_rate < 0 else rpc_rate,
            rpc_max_burst=int(g("limits.rpc_max_burst", 1000)),
            kv_max_value_size=int(g("limits.kv_max_value_size", 524288)),
            txn_max_req_len=int(g("limits.txn_max_req_len", 524288)),
            raft_max_entry_size=self.positive_int("limits.raft_max_entry_size", 4194304),
            raft_partial_frame_budget=self.positive_int("limits.raft_partial_frame_budget",
                                                        33554432),
            raft_frame_timeout=self.duration("limits.raft_frame_timeout", positive=True),
            http_max_request_body=self.positive_int("limits.http_max_request_body", 1048576),
            http_read_header_timeout=self.duration(
                "limits.http_read_header_timeout", nonneg=True
            ),
            raft_multiplier=int(g("performance.raft_multiplier", 5)),
            leave_drain_time=self.duration("performance.leave_drain_time", nonneg=True),
            rpc_hold_timeout=self.duration("performance.rpc_hold_timeout", nonneg=True),
            raft_protocol=int(g("raft_protocol", 3)),
            rpc_protocol=int(g("protocol", 2)),
            acls_enabled=bool(g("acl.enabled", False)),
            acl_default_policy=str(g("acl.default_policy", "allow")),
            acl_down_policy=str(g("acl.down_policy", "extend-cache")),
            acl_policy_ttl=self.duration("acl.policy_ttl", nonneg=True),
            acl_token_ttl=self.duration("acl.token_ttl", nonneg=True),
            acl_role_ttl=self.duration("acl.role_ttl", nonneg=True),
            acl_enable_token_persistence=bool(g("acl.enable_token_persistence", False)),
            acl_enable_key_list_policy=bool(g("acl.enable_key_list_policy", False)),
            acl_token_replication=bool(g("acl.enable_token_replication", False)),
            acl_tokens=ACLTokens(
                initial_management=str(
                    g("acl.tokens.initial_management") or g("acl.tokens.master") or ""
                ),
                agent=str(g("acl.tokens.agent", "") or ""),
                agent_recovery=str(
                    g("acl.tokens.agent_recovery") or g("acl.tokens.agent_master") or ""
                ),
                default=str(g("acl.tokens.default", "") or ""),
                replication=str(g("acl.tokens.replication", "") or ""),
            ),
            services=services,
            checks=checks,
        )

    def _dur(self, d: Mapping[str, Any], key: str) -> float:
        raw = d.get(key)
        return parse_duration_ns(raw) / 1e9 if raw else 0.0

    def check(self, c: Mapping[str, Any], path: str) -> CheckDefinition:
        return CheckDefinition(
            id=str(c.get("id") or c.get("check_id") or ""),
            name=str(c.get("name", "")),
            notes=str(c.get("notes", "")),
            service_id=str(c.get("service_id", "")),
            token=str(c.get("token", "")),
            status=str(c.get("status", "")),
            script_args=tuple(c.get("args", ())),
            http=str(c.get("http", "")),
            method=str(c.get("method", "")),
            body=str(c.get("body", "")),
            header=dict(c.get("header", {})),
            tcp=str(c.get("tcp", "")),
            grpc=str(c.get("grpc", "")),
            grpc_use_tls=bool(c.get("grpc_use_tls", False)),
            tls_server_name=str(c.get("tls_server_name", "")),
            tls_skip_verify=bool(c.get("tls_skip_verify", False)),
            alias_node=str(c.get("alias_node", "")),
            alias_service=str(c.get("alias_service", "")),
            interval=self._dur(c, "interval"),
            timeout=self._dur(c, "timeout"),
            ttl=self._dur(c, "ttl"),
            deregister_critical_service_after=self._dur(c, "deregister_critical_service_after"),
            success_before_passing=int(c.get("success_before_passing", 0)),
            failures_before_critical=int(c.get("failures_before_critical", 0)),
        )

    def service(self, s: Mapping[str, Any], path: str) -> ServiceDefinition:
        kind = str(s.get("kind", ""))
        name = str(s.get("name", ""))
        if kind not in _SERVICE_KINDS:
            raise self.error(
                f"service {name!r}: invalid service kind {kind!r}; use one of "
                + ", ".join(repr(k) for k in _SERVICE_KINDS),
                path,
            )
        meta = dict(s.get("meta", {}))
        err = service_meta_problem(kind, meta)
        if err:
            raise self.error(f"invalid meta for service {name}: {err}", path)
        checks = [self.check(c, f"{path}.checks[{i}]") for i, c in enumerate(s.get("checks", []))]
        if "check" in s:
            checks.append(self.check(s["check"], f"{path}.check"))
        weights = s.get("weights", {})
        return ServiceDefinition(
            kind=kind,
            id=str(s.get("id", "")),
            name=name,
            tags=tuple(s.get("tags", ())),
            address=str(s.get("address", "")),
            tagged_addresses={
                k: ServiceAddress(str(v.get("address", "")), int(v.get("port", 0)))
                for k, v in s.get("tagged_addresses", {}).items()
            },
            meta=meta,
            port=int(s.get("port", 0)),
            enable_tag_override=bool(s.get("enable_tag_override", False)),
            token=str(s.get("token", "")),
            weights_passing=int(weights.get("passing", 1)),
            weights_warning=int(weights.get("warning", 1)),
            checks=tuple(checks),
        )

