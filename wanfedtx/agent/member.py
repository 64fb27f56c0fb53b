# -*- test-case-name: tests.unit.agent.test_agent_units -*-
"""This node's serf member as it will be advertised on the LAN pool (``Member`` in agent/self).

Gossip is not running yet, so this describes the node truthfully as it *will* be announced:
name, LAN advertise address, serf LAN port, the tags a Consul agent publishes (servers: role
``consul``, dc, segment, id, vsn, vsn_min, vsn_max, raft_vsn, build, port, bootstrap/expect,
use_tls, acls, ft_fs, wan_join_port; clients: role ``node``, dc, segment, id, vsn, vsn_min,
vsn_max, build), status alive (1) and the memberlist/serf protocol versions (1/5/2 and 2/5/4).
"""

from __future__ import annotations

from typing import Any

from wanfedtx.config.runtime import RuntimeConfig

# Consul's serf ``acls`` tag: "0" disabled, "1" enabled, "2" legacy (never set here).
ACLS_DISABLED, ACLS_ENABLED = 0, 1


def acls_tag(rt: RuntimeConfig) -> int:
    """The ``acls`` tag a server advertises: 1 with ``acl.enabled = true``, else 0."""
    return ACLS_ENABLED if rt.acls_enabled else ACLS_DISABLED
STATUS_ALIVE = 1
PROTOCOL_MIN, PROTOCOL_MAX, PROTOCOL_CUR = 1, 5, 2
DELEGATE_MIN, DELEGATE_MAX, DELEGATE_CUR = 2, 5, 4
CONSUL_PROTOCOL, CONSUL_PROTOCOL_MIN, CONSUL_PROTOCOL_MAX = 2, 2, 3


def lan_tags(rt: RuntimeConfig) -> dict[str, str]:
    build = f"{rt.version}:{rt.revision}"
    tags = {
        "dc": rt.datacenter,
        "segment": "",
        "id": rt.node_id,
        "vsn": str(rt.rpc_protocol),
        "vsn_min": str(CONSUL_PROTOCOL_MIN),
        "vsn_max": str(CONSUL_PROTOCOL_MAX),
        "build": build,
    }
    if not rt.server_mode:
        tags["role"] = "node"
        return tags
    tags.update(
        {
            "role": "consul",
            "raft_vsn": str(rt.raft_protocol),
            "port": str(rt.server_port),
            "acls": str(acls_tag(rt)),
            "ft_fs": "1",
        }
    )
    if rt.serf_port_wan > 0:
        tags["wan_join_port"] = str(rt.serf_port_wan)
    if rt.bootstrap:
        tags["bootstrap"] = "1"
    if rt.bootstrap_expect:
        tags["expect"] = str(rt.bootstrap_expect)
    if rt.ca_file or rt.ca_path:
        tags["use_tls"] = "1"
    return dict(sorted(tags.items()))


def local_member(rt: RuntimeConfig) -> dict[str, Any]:
    return {
        "Name": rt.node_name,
        "Addr": rt.advertise_addr_lan,
        "Port": rt.serf_port_lan,
        "Tags": lan_tags(rt),
        "Status": STATUS_ALIVE,
        "ProtocolMin": PROTOCOL_MIN,
        "ProtocolMax": PROTOCOL_MAX,
        "ProtocolCur": PROTOCOL_CUR,
        "DelegateMin": DELEGATE_MIN,
        "DelegateMax": DELEGATE_MAX,
        "DelegateCur": DELEGATE_CUR,
    }
