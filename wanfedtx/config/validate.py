# -*- test-case-name: tests.unit.config.test_config_validation -*-
"""Consul's semantic checks of a built ``RuntimeConfig`` (the ``validate`` step of ``load``).

``Validation`` is a mixin of ``config.builder.Builder``: ``validate`` raises ``ValidationError``
(located at the key's file and line when known, see ``error``) or appends warnings, in Consul's
order, including the seven WAN-federation errors of the reference.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from wanfedtx.config.acl import check_acl
from wanfedtx.config.discover import check_discovery
from wanfedtx.config.errors import ValidationError
from wanfedtx.config.runtime import (
    Addr,
    RuntimeConfig,
)
from wanfedtx.config.schema import Origins
from wanfedtx.hostport import join_host_port

_DATACENTER_RE = re.compile(r"^[a-z0-9_-]+$")
_INVALID_DNS_RE = re.compile(r"[^A-Za-z0-9\-]+")
_INVALID_NODE_RE = re.compile(r"[\s`'\"\\]+")
_TLS_VERSIONS = ("tls10", "tls11", "tls12", "tls13")
MAX_RAFT_MULTIPLIER = 10  # Consul's consul.MaxRaftMultiplier


class Validation:
    """The checks of ``Builder``; needs the merged data's ``origins`` and the ``warnings`` list."""

    origins: Origins
    warnings: list[str]

    def error(self, message: str, path: str | None = None) -> ValidationError:
        if path is not None and path in self.origins:
            src, line = self.origins[path]
            if src not in ("flags", "default", "dev"):
                return ValidationError(message, source=src, line=line or None, key=path)
        return ValidationError(message, key=path)

    def validate(self, rt: RuntimeConfig) -> None:
        if rt.raft_protocol != 3:
            raise self.error(
                f"raft_protocol version {rt.raft_protocol} is not supported by this version of "
                "Consul",
                "raft_protocol",
            )
        if rt.datacenter == "":
            raise self.error("datacenter cannot be empty", "datacenter")
        if not _DATACENTER_RE.match(rt.datacenter):
            raise self.error(
                f"datacenter cannot be {_q(rt.datacenter)}. Please use only [a-z0-9-_].",
                "datacenter",
            )
        if rt.data_dir == "" and not rt.dev_mode:
            raise self.error("data_dir cannot be empty", "data_dir")
        if rt.data_dir and os.path.exists(rt.data_dir) and not os.path.isdir(rt.data_dir):
            raise self.error(f"data_dir {_q(rt.data_dir)} is not a directory", "data_dir")
        if rt.node_name == "":
            raise self.error("node_name cannot be empty", "node_name")
        if _INVALID_DNS_RE.search(rt.node_name):
            self.warnings.append(
                f"Node name {_q(rt.node_name)} will not be discoverable via DNS due to invalid "
                "characters. Valid characters include all alpha-numerics and dashes."
            )
        elif _INVALID_NODE_RE.search(rt.node_name):
            self.warnings.append(
                f"Found invalid characters in node name {_q(rt.node_name)} - whitespace and "
                "quotes (', \", `) cannot be used with auto-config."
            )
        elif len(rt.node_name) > 63:
            self.warnings.append(
                f"Node name {_q(rt.node_name)} will not be discoverable via DNS due to it being "
                "too long. Valid lengths are between 1 and 63 bytes."
            )
        if rt.node_id:
            try:
                import uuid

                uuid.UUID(rt.node_id)
            except ValueError:
                raise self.error(
                    f"node_id {_q(rt.node_id)} is not a valid UUID", "node_id"
                ) from None
        if not 1 <= rt.raft_multiplier <= MAX_RAFT_MULTIPLIER:
            raise self.error(
                f"performance.raft_multiplier cannot be {rt.raft_multiplier}. Must be between 1 "
                f"and {MAX_RAFT_MULTIPLIER}",
                "performance.raft_multiplier",
            )
        if rt.bootstrap and not rt.server_mode:
            raise self.error("'bootstrap = true' requires 'server = true'", "bootstrap")
        if rt.bootstrap_expect < 0:
            raise self.error(
                f"bootstrap_expect cannot be {rt.bootstrap_expect}. Must be greater than or equal "
                "to zero",
                "bootstrap_expect",
            )
        if rt.bootstrap_expect > 0 and not rt.server_mode:
            raise self.error("'bootstrap_expect > 0' requires 'server = true'", "bootstrap_expect")
        if rt.bootstrap_expect > 0 and rt.dev_mode:
            raise self.error("'bootstrap_expect > 0' not allowed in dev mode", "bootstrap_expect")
        if rt.bootstrap_expect > 0 and rt.bootstrap:
            raise self.error(
                "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
                "bootstrap_expect",
            )
        if rt.primary_datacenter and not _DATACENTER_RE.match(rt.primary_datacenter):
            raise self.error(
                f"primary_datacenter cannot be {_q(rt.primary_datacenter)}. Please use only "
                "[a-z0-9-_].",
                "primary_datacenter",
            )
        for k in rt.node_meta:
            if k.startswith("consul-"):
                raise self.error(
                    "node_meta invalid: Key prefix 'consul-' is reserved for internal use",
                    "node_meta",
                )
        if rt.encrypt_key:
            try:
                key = base64.b64decode(rt.encrypt_key, validate=True)
            except (binascii.Error, ValueError) as e:
                raise self.error(f"encrypt has invalid key: {e}", "encrypt") from None
            if len(key) not in (16, 24, 32):
                raise self.error(
                    f"encrypt has invalid key: key size must be 16, 24 or 32 bytes, got {len(key)}",
                    "encrypt",
                )
        if rt.tls_min_version not in _TLS_VERSIONS:
            raise self.error(
                f"tls_min_version: invalid TLS version {_q(rt.tls_min_version)}; use one of "
                + ", ".join(_TLS_VERSIONS),
                "tls_min_version",
            )
        from wanfedtx.logs import UnknownLogLevel, parse_level

        try:
            parse_level(rt.log_level)
        except UnknownLogLevel as e:
            raise self.error(str(e), "log_level") from None

        # The reference's WAN federation checks, in its order.
        if rt.connect_mesh_gateway_wan_federation_enabled and not rt.server_mode:
            raise ValidationError(
                "'connect.enable_mesh_gateway_wan_federation = true' requires 'server = true'"
            )
        if rt.connect_mesh_gateway_wan_federation_enabled and "/" in rt.node_name:
            raise ValidationError(
                "'connect.enable_mesh_gateway_wan_federation = true' requires that 'node_name' "
                "not contain '/' characters"
            )
        if rt.connect_mesh_gateway_wan_federation_enabled:
            if rt.start_join_addrs_wan:
                raise ValidationError(
                    "'start_join_wan' is incompatible with "
                    "'connect.enable_mesh_gateway_wan_federation = true'"
                )
            if rt.retry_join_wan:
                raise ValidationError(
                    "'retry_join_wan' is incompatible with "
                    "'connect.enable_mesh_gateway_wan_federation = true'"
                )
        if rt.primary_gateways:
            if not rt.server_mode:
                raise ValidationError("'primary_gateways' requires 'server = true'")
            if rt.primary_datacenter == rt.datacenter:
                raise ValidationError(
                    "'primary_gateways' should only be configured in a secondary datacenter"
                )

        inuse: dict[str, str] = {}

        def unique(name: str, net: str, addr: Addr | None) -> None:
            if addr is None:
                return
            key = f"{net}:{join_host_port(*addr)}"
            if key in inuse:
                raise ValidationError(
                    f"{name} address {join_host_port(*addr)} already configured for {inuse[key]}"
                )
            inuse[key] = name

        for a in rt.dns_addrs:
            unique("DNS", "tcp", a)
            unique("DNS", "udp", a)
        for a in rt.http_addrs:
            unique("HTTP", "tcp", a)
        for a in rt.https_addrs:
            unique("HTTPS", "tcp", a)
        for a in rt.grpc_addrs:
            unique("gRPC", "tcp", a)
        unique("RPC Advertise", "tcp", rt.rpc_advertise_addr)
        unique("Serf Advertise LAN", "tcp", rt.serf_advertise_addr_lan)
        unique("Serf Advertise WAN", "tcp", rt.serf_advertise_addr_wan)

        for svc in rt.services:
            if not svc.name:
                raise ValidationError(f"service {_q(svc.name)}: Missing service name")
            if svc.kind == "mesh-gateway" and svc.port <= 0:
                raise ValidationError(
                    f"service {_q(svc.name)}: Port must be set for a Mesh Gateway"
                )

        check_acl(rt, self.origins, self.error, self.warnings)
        check_discovery(
            {
                "retry_join": rt.retry_join_lan,
                "retry_join_wan": rt.retry_join_wan,
                "primary_gateways": rt.primary_gateways,
            },
            self.error,
            self.warnings,
        )

        # warnings, as Consul prints them
        if rt.server_mode and not rt.dev_mode and not rt.bootstrap and rt.bootstrap_expect == 2:
            self.warnings.append(
                "bootstrap_expect = 2: A cluster with 2 servers will provide no failure "
                "tolerance. See https://www.consul.io/docs/internals/consensus.html#deployment-table"
            )
        if (
            rt.server_mode
            and not rt.bootstrap
            and rt.bootstrap_expect > 2
            and rt.bootstrap_expect % 2 == 0
        ):
            self.warnings.append(
                "bootstrap_expect is even number: A cluster with an even number of servers does "
                "not achieve optimum fault tolerance. See "
                "https://www.consul.io/docs/internals/consensus.html#deployment-table"
            )
        if rt.server_mode and rt.bootstrap and rt.bootstrap_expect == 0:
            self.warnings.append("bootstrap = true: do not enable unless necessary")
        if rt.server_mode and not rt.dev_mode and not rt.bootstrap and rt.bootstrap_expect > 1:
            self.warnings.append(f"bootstrap_expect > 0: expecting {rt.bootstrap_expect} servers")



def _q(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'
