# -*- test-case-name: tests.unit.gossip.test_gossip_memberlist -*-
"""memberlist configuration and its timing profiles (DefaultLANConfig / WAN / Local).

Durations are float seconds. ``lan_config``, ``wan_config`` and ``local_config`` return fresh
mutable configs with memberlist 0.2.2's defaults; Consul's WAN pool starts from ``wan_config``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .errors import ConfigError
from .security import Keyring
from .wire import PROTOCOL_VERSION_DEFAULT, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN


@attrs.define
class MemberlistConfig:
    """Settings of one memberlist instance (field names follow memberlist's Config)."""

    name: str = ""
    bind_addr: str = "0.0.0.0"
    bind_port: int = 7946
    advertise_addr: str = ""
    advertise_port: int = 0
    protocol_version: int = PROTOCOL_VERSION_DEFAULT
    tcp_timeout: float = 10.0
    indirect_checks: int = 3
    retransmit_mult: int = 4
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    push_pull_interval: float = 30.0
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    disable_tcp_pings: bool = False
    disable_tcp_pings_for_node: Callable[[str], bool] | None = None
    awareness_max_multiplier: int = 8
    gossip_nodes: int = 3
    gossip_interval: float = 0.2
    gossip_to_the_dead_time: float = 30.0
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    enable_compression: bool = True
    udp_buffer_size: int = 1400
    dead_node_reclaim_time: float = 0.0
    require_node_names: bool = False
    delegate_protocol_min: int = 0
    delegate_protocol_max: int = 0
    delegate_protocol_version: int = 0
    keyring: Keyring | None = None

    def encryption_enabled(self) -> bool:
        return self.keyring is not None and bool(self.keyring.keys())

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("memberlist: a node name is required (set name)")
        if not PROTOCOL_VERSION_MIN <= self.protocol_version <= PROTOCOL_VERSION_MAX:
            raise ConfigError(
                f"Protocol version '{self.protocol_version}' too low/high. Must be in range: "
                f"[{PROTOCOL_VERSION_MIN}, {PROTOCOL_VERSION_MAX}]"
            )
        if self.probe_timeout <= 0 or self.probe_interval <= 0 or self.gossip_interval <= 0:
            raise ConfigError("probe_interval, probe_timeout and gossip_interval must be > 0")


def lan_config(name: str = "") -> MemberlistConfig:
    """memberlist ``DefaultLANConfig``."""
    return MemberlistConfig(name=name)


def wan_config(name: str = "") -> MemberlistConfig:
    """memberlist ``DefaultWANConfig`` (what Consul's WAN pool starts from)."""
    return MemberlistConfig(
        name=name,
        tcp_timeout=30.0,
        suspicion_mult=6,
        push_pull_interval=60.0,
        probe_timeout=3.0,
        probe_interval=5.0,
        gossip_nodes=4,
        gossip_interval=0.5,
        gossip_to_the_dead_time=60.0,
    )


def local_config(name: str = "") -> MemberlistConfig:
    """memberlist ``DefaultLocalConfig`` (fast timers for loopback and tests)."""
    return MemberlistConfig(
        name=name,
        tcp_timeout=1.0,
        indirect_checks=1,
        retransmit_mult=2,
        suspicion_mult=3,
        push_pull_interval=15.0,
        probe_timeout=0.2,
        probe_interval=1.0,
        gossip_interval=0.1,
        gossip_to_the_dead_time=15.0,
    )


PROFILES: dict[str, Callable[[str], MemberlistConfig]] = {
    "lan": lan_config,
    "wan": wan_config,
    "local": local_config,
}
