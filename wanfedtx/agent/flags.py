# -*- test-case-name: tests.unit.agent.test_agent_units -*-
"""The agent's command-line flags (Consul's names) and their mapping onto config keys.

Shared by ``wanfed agent`` (single-dash flags, ``-datacenter=dc1``) and the twistd plugin
(``--datacenter dc1``). ``FLAGS`` lists every flag: its config key path, kind and help text
(Consul's wording). ``flags_to_config`` turns parsed values into the nested dict that
``wanfedtx.config.load`` merges as the command-line source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Flag:
    name: str
    path: str  # config key path, e.g. "ports.http"; "" for flags that are not config keys
    kind: str  # str int bool list map
    help: str


FLAGS: tuple[Flag, ...] = (
    Flag("advertise", "advertise_addr", "str", "Sets the advertise address to use."),
    Flag(
        "advertise-wan",
        "advertise_addr_wan",
        "str",
        "Sets address to advertise on WAN instead of -advertise address.",
    ),
    Flag("bind", "bind_addr", "str", "Sets the bind address for cluster communication."),
    Flag("bootstrap", "bootstrap", "bool", "Sets server to bootstrap mode."),
    Flag("bootstrap-expect", "bootstrap_expect", "int", "Sets server to expect bootstrap mode."),
    Flag(
        "client",
        "client_addr",
        "str",
        "Sets the address to bind for client access. This includes RPC, DNS, HTTP, HTTPS and "
        "gRPC (if configured).",
    ),
    Flag("data-dir", "data_dir", "str", "Path to a data directory to store agent state."),
    Flag("datacenter", "datacenter", "str", "Datacenter of the agent."),
    Flag(
        "disable-host-node-id",
        "disable_host_node_id",
        "bool",
        "Setting this to true will prevent Consul from using information from the host to "
        "generate a node ID, and will cause Consul to generate a random node ID instead.",
    ),
    Flag("dns-port", "ports.dns", "int", "DNS port to use."),
    Flag("domain", "domain", "str", "Domain to use for DNS interface."),
    Flag("encrypt", "encrypt", "str", "Provides the gossip encryption key."),
    Flag(
        "grpc-port",
        "ports.grpc",
        "int",
        "Sets the gRPC API port to listen on (currently needed for Envoy xDS only).",
    ),
    Flag("http-port", "ports.http", "int", "Sets the HTTP API port to listen on."),
    Flag(
        "join",
        "start_join",
        "list",
        "Address of an agent to join at start time. Can be specified multiple times.",
    ),
    Flag(
        "join-wan",
        "start_join_wan",
        "list",
        "Address of an agent to join -wan at start time. Can be specified multiple times.",
    ),
    Flag("log-file", "log_file", "str", "Path to the file the logs get written to."),
    Flag("log-json", "log_json", "bool", "Output logs in JSON format."),
    Flag("log-level", "log_level", "str", "Log level of the agent."),
    Flag("log-rotate-bytes", "log_rotate_bytes", "int",
         "Maximum number of bytes that should be written to a log file."),
    Flag("log-rotate-duration", "log_rotate_duration", "str",
         "Time after which log rotation needs to be performed."),
    Flag("log-rotate-max-files", "log_rotate_max_files", "int",
         "Maximum number of log file archives to keep."),
    Flag("node", "node_name", "str", "Name of this node. Must be unique in the cluster."),
    Flag(
        "node-id",
        "node_id",
        "str",
        "A unique ID for this node across space and time. Defaults to a randomly-generated ID "
        "that persists in the data-dir.",
    ),
    Flag(
        "node-meta",
        "node_meta",
        "map",
        "An arbitrary metadata key/value pair for this node, of the format `key:value`. Can be "
        "specified multiple times.",
    ),
    Flag(
        "primary-gateway",
        "primary_gateways",
        "list",
        "Address of a mesh gateway in the primary datacenter to use to bootstrap WAN federation "
        "at start time with retries enabled. Can be specified multiple times.",
    ),
    Flag(
        "rejoin",
        "rejoin_after_leave",
        "bool",
        "Ignores a previous leave and attempts to rejoin the cluster.",
    ),
    Flag("retry-interval", "retry_interval", "str", "Time to wait between join attempts."),
    Flag(
        "retry-interval-wan",
        "retry_interval_wan",
        "str",
        "Time to wait between join -wan attempts.",
    ),
    Flag(
        "retry-join",
        "retry_join",
        "list",
        "Address of an agent to join at start time with retries enabled. Can be specified "
        "multiple times.",
    ),
    Flag(
        "retry-join-wan",
        "retry_join_wan",
        "list",
        "Address of an agent to join -wan at start time with retries enabled. Can be specified "
        "multiple times.",
    ),
    Flag(
        "retry-max",
        "retry_max",
        "int",
        "Maximum number of join attempts. Defaults to 0, which will retry indefinitely.",
    ),
    Flag(
        "retry-max-wan",
        "retry_max_wan",
        "int",
        "Maximum number of join -wan attempts. Defaults to 0, which will retry indefinitely.",
    ),
    Flag("serf-lan-bind", "serf_lan", "str", "Address to bind Serf LAN listeners to."),
    Flag("serf-lan-port", "ports.serf_lan", "int", "Sets the Serf LAN port to listen on."),
    Flag("serf-wan-bind", "serf_wan", "str", "Address to bind Serf WAN listeners to."),
    Flag("serf-wan-port", "ports.serf_wan", "int", "Sets the Serf WAN port to listen on."),
    Flag("server", "server", "bool", "Switches agent to server mode."),
    Flag("server-port", "ports.server", "int", "Sets the server port to listen on."),
)


class FlagError(ValueError):
    """A flag value that cannot be used."""


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "t", "true", "yes"):
        return True
    if t in ("0", "f", "false", "no"):
        return False
    raise FlagError(f"invalid boolean value {text!r}")


def flags_to_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config data from ``{flag name: value}`` (values already typed; None = unset)."""
    out: dict[str, Any] = {}
    for flag in FLAGS:
        v = values.get(flag.name)
        if v is None or (flag.kind in ("list", "map") and not v):
            continue
        if flag.kind == "map":
            m: dict[str, str] = {}
            for entry in v:
                if ":" not in entry:
                    raise FlagError(f"-{flag.name}: {entry!r} is not of the form key:value")
                k, val = entry.split(":", 1)
                m[k] = val
            v = m
        elif flag.kind == "list":
            v = list(v)
        parts = flag.path.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out
