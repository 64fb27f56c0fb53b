# -*- test-case-name: tests.unit.gossip.test_gossip_pools -*-
"""Consul's serf pools on top of ``Serf``: WAN naming, server tags, server parsing and the router.

* WAN members are named ``<node>.<datacenter>``; ``split_node_name`` is wanfed's ``SplitNodeName``.
* ``server_tags`` builds the tags a Consul server advertises; ``parse_server`` is
  ``metadata.IsConsulServer``: the checks applied before treating a member as a server.
* ``wan_memberlist_config`` is the WAN pool's memberlist config with mesh-gateway federation on:
  node names required and TCP fallback pings off for nodes of other datacenters.
* ``Router`` keeps the alive servers of every datacenter from WAN serf member events (for RPC
  forwarding and ``Catalog.ListDatacenters``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import attrs

from .config import MemberlistConfig, wan_config
from .errors import GossipError
from .serf import Event, Member, MemberEvent, MemberStatus

_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
_INT_TAGS = (
    "expect",
    "raft_vsn",
    "wan_join_port",
    "grpc_port",
    "grpc_tls_port",
    "vsn_min",
    "vsn_max",
)


def split_node_name(name: str) -> tuple[str, str]:
    """``"node.dc"`` -> ``("node", "dc")``; exactly one dot, else wanfed's exact error."""
    parts = name.split(".")
    if len(parts) != 2:
        raise GossipError(f"node name does not encode a datacenter: {name}")
    return parts[0], parts[1]


def wan_member_name(node: str, datacenter: str) -> str:
    return f"{node}.{datacenter}"


def server_tags(
    *,
    datacenter: str,
    node_id: str,
    build: str,
    port: int = 8300,
    consul_protocol: int = 2,
    raft_vsn: int = 3,
    bootstrap_expect: int = 0,
    bootstrap: bool = False,
    use_tls: bool = False,
    acls: int = 0,
    wan_join_port: int | None = None,
    segment: str = "",
    grpc_port: int | None = None,
    read_replica: bool = False,
) -> dict[str, str]:
    """The serf tags of a Consul server (LAN adds ``wan_join_port``; WAN has ``segment=""``)."""
    tags = {
        "role": "consul",
        "dc": datacenter,
        "segment": segment,
        "id": node_id,
        "vsn": str(consul_protocol),
        "vsn_min": "2",
        "vsn_max": "3",
        "raft_vsn": str(raft_vsn),
        "build": build,
        "port": str(port),
        "acls": str(acls),
        "ft_fs": "1",
        "ft_si": "1",
    }
    if bootstrap:
        tags["bootstrap"] = "1"
    elif bootstrap_expect:
        tags["expect"] = str(bootstrap_expect)
    if use_tls:
        tags["use_tls"] = "1"
    if wan_join_port is not None:
        tags["wan_join_port"] = str(wan_join_port)
    if grpc_port is not None:
        tags["grpc_port"] = str(grpc_port)
    if read_replica:
        tags["nonvoter"] = "1"
        tags["read_replica"] = "1"
    return tags


@attrs.frozen
class ServerInfo:
    """A member that passed ``parse_server`` (Consul's ``metadata.Server``)."""

    name: str
    short_name: str
    datacenter: str
    addr: str
    port: int
    build: str
    version: int
    raft_version: int
    expect: int
    bootstrap: bool
    use_tls: bool
    status: MemberStatus
    tags: dict[str, str] = attrs.field(eq=False, hash=False)

    @property
    def rpc_addr(self) -> str:
        return f"{self.addr}:{self.port}"


def _int(tags: dict[str, str], key: str) -> int | None:
    try:
        return int(tags[key])
    except (KeyError, ValueError):
        return None


def parse_server(m: Member) -> ServerInfo | None:
    """``metadata.IsConsulServer``: None unless the tags describe a valid Consul server."""
    t = m.tags
    if t.get("role") != "consul":
        return None
    dc = t.get("dc", "")
    port, vsn = _int(t, "port"), _int(t, "vsn")
    build = t.get("build", "")
    if port is None or vsn is None or not _VERSION_RE.search(build):
        return None
    for key in _INT_TAGS:
        if key in t and _int(t, key) is None:
            return None
    for key, val in t.items():
        if key.startswith("ft_"):
            try:
                int(val)
            except ValueError:
                return None
    short = m.name[: -len(dc) - 1] if dc and m.name.endswith("." + dc) else m.name
    return ServerInfo(
        name=m.name,
        short_name=short,
        datacenter=dc,
        addr=m.addr,
        port=port,
        build=build,
        version=vsn,
        raft_version=_int(t, "raft_vsn") or 1,
        expect=_int(t, "expect") or 0,
        bootstrap=t.get("bootstrap") == "1",
        use_tls=t.get("use_tls") == "1",
        status=m.status,
        tags=dict(t),
    )


def wan_memberlist_config(
    node: str, datacenter: str, mesh_gateway_federation: bool = True
) -> MemberlistConfig:
    """memberlist's WAN defaults, named ``node.dc``; with wanfed: names required, no cross-DC TCP
    fallback pings (the gateway path is TCP already)."""
    cfg = wan_config(wan_member_name(node, datacenter))
    if mesh_gateway_federation:
        cfg.require_node_names = True

        def disable_tcp_pings(name: str) -> bool:
            try:
                _, dc = split_node_name(name)
            except GossipError:
                return False
            return dc != datacenter

        cfg.disable_tcp_pings_for_node = disable_tcp_pings
    return cfg


def wan_merge_check(
    local_dc: str, federation_enabled: bool = True
) -> Callable[[list[Member]], str | None]:
    """Consul's WAN merge delegate: refuse a merge holding non-servers (or other DCs if off)."""

    def check(members: list[Member]) -> str | None:
        for m in members:
            srv = parse_server(m)
            if srv is None:
                return f"Member '{m.name}' is not a server"
            if not federation_enabled and srv.datacenter != local_dc:
                return (
                    f"Member '{m.name}' part of wrong datacenter '{srv.datacenter}'; "
                    "WAN federation is disabled"
                )
        return None

    return check


def lan_merge_check(local_dc: str, segment: str = "") -> Callable[[list[Member]], str | None]:
    """Consul's LAN merge delegate: refuse members of another datacenter or segment."""

    def check(members: list[Member]) -> str | None:
        for m in members:
            role = m.tags.get("role")
            if role in ("node", "consul"):
                dc = m.tags.get("dc", "")
                if dc != local_dc:
                    return f"Member '{m.name}' part of wrong datacenter '{dc}'"
            seg = m.tags.get("segment", "")
            if seg != segment:
                return f"Member '{m.name}' part of wrong segment '{seg}' (expected '{segment}')"
        return None

    return check


def server_members(ev: Event) -> Iterator[tuple[str, Member, ServerInfo]]:
    """The members of a member event that are Consul servers: the event's type
    (``member-join``...), the member and its :func:`parse_server` view; nothing for any other
    event."""
    if not isinstance(ev, MemberEvent):
        return
    for m in ev.members:
        srv = parse_server(m)
        if srv is not None:
            yield ev.type, m, srv

class Router:
    """Consul servers per datacenter, fed by WAN serf member events (Consul's router).

    As the reference: a join or update adds a server, a leave or reap removes it, and a failure
    only moves it to the back of its datacenter's list: a server that gossip thinks failed stays
    routable (its RPC may still work, and with WAN federation gossip and RPC take different
    paths through the gateways), it is just tried last.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._servers: dict[str, dict[str, ServerInfo]] = {}
        self._failed: set[tuple[str, str]] = set()

    def handle_event(self, ev: Event) -> None:
        for kind, m, srv in server_members(ev):
            key = (srv.datacenter, srv.name)
            if kind in ("member-join", "member-update") and m.status == MemberStatus.ALIVE:
                self._servers.setdefault(srv.datacenter, {})[srv.name] = srv
                self._failed.discard(key)
            elif kind == "member-failed":
                if srv.name in self._servers.get(srv.datacenter, {}):
                    self._failed.add(key)
            else:
                dc = self._servers.get(srv.datacenter, {})
                dc.pop(srv.name, None)
                self._failed.discard(key)
                if not dc:
                    self._servers.pop(srv.datacenter, None)

    def datacenters(self) -> list[str]:
        """Datacenters with at least one known server, sorted (Catalog.ListDatacenters order is
        by round-trip time in Consul; without coordinates we sort by name)."""
        return sorted(self._servers)

    def servers(self, datacenter: str) -> list[ServerInfo]:
        """The datacenter's servers by name, the ones gossip saw fail last."""
        return sorted(
            self._servers.get(datacenter, {}).values(),
            key=lambda s: ((datacenter, s.name) in self._failed, s.name),
        )

    def find_route(self, datacenter: str) -> ServerInfo | None:
        """A random server of ``datacenter``, preferring those not marked failed (None when the
        DC has none)."""
        servers = self.servers(datacenter)
        healthy = [s for s in servers if (datacenter, s.name) not in self._failed]
        pool = healthy or servers
        return self.rng.choice(pool) if pool else None


def flood_join_address(lan_member: Member, datacenter: str) -> str | None:
    """Consul's serf flooder: the WAN join address ``<node>.<dc>/<addr>:<wan_join_port>`` of a LAN
    server, or None when the member is not a server or has no ``wan_join_port``."""
    srv = parse_server(lan_member)
    if srv is None or lan_member.status != MemberStatus.ALIVE:
        return None
    port = _int(lan_member.tags, "wan_join_port")
    if port is None:
        return None
    host = f"[{lan_member.addr}]" if ":" in lan_member.addr else lan_member.addr
    return f"{wan_member_name(lan_member.name, datacenter)}/{host}:{port}"


def bootstrap_servers(lan_members: list[Member], expect: int) -> list[ServerInfo] | None:
    """``bootstrap_expect``: the alive LAN servers to bootstrap raft with, once exactly ``expect``
    of them agree on ``expect`` and none is already bootstrapped; None means keep waiting."""
    servers = [s for s in map(parse_server, lan_members) if s is not None]
    servers = [s for s in servers if s.status == MemberStatus.ALIVE]
    if any(s.bootstrap for s in servers):
        return None
    if any(s.expect and s.expect != expect for s in servers):
        return None
    if len(servers) < expect:
        return None
    return sorted(servers, key=lambda s: s.name)
