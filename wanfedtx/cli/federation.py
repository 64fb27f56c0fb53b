# -*- test-case-name: tests.unit.cli.test_cli_federation_status -*-
"""``wanfed federation status [-wan] [-format=text|json]``: the federation at a glance.

One screen per datacenter, read from one agent's HTTP API (the client flags of every HTTP verb,
``wanfedtx.cli.httpapi``):

- its servers in the WAN pool and their status (``/v1/agent/members?wan=1``) and its leader
  (``/v1/status/leader?dc=``);
- its mesh gateways with their health (``/v1/health/service/<gateway>?dc=``; when the
  datacenter cannot be asked, the copy in the primary's federation state, which says so);
- its federation state in the primary: ``UpdatedAt`` and its age, ``ModifyIndex``;
- for a secondary, how far its replicated copy of the federation states is behind the primary:
  the highest ``ModifyIndex`` among the primary's states against the highest
  ``PrimaryModifyIndex`` among the secondary's copies (``/v1/internal/federation-states?dc=``),
  and how many states differ;
- ACL replication (``/v1/acl/replication?dc=``) and the Connect CA roots
  (``/v1/connect/ca/roots?dc=``) when the agent has those endpoints (a 404 leaves them out).

``-wan`` adds the whole WAN pool as ``wanfed members -wan`` prints it. ``-format=json`` prints the
same facts as one JSON document for scripts. Exit 0 when the agent answered (a datacenter that
cannot be reached is reported, not an error), 1 when it could not be asked.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from wanfedtx.cli.httpapi import (
    APIError,
    Client,
    UnexpectedResponse,
    add_client_flags,
    client_from_args,
    columnize,
    err,
    out,
)

HELP = "Shows the federation: datacenters, WAN members, gateways, federation states (status)"

STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
HEALTH_ORDER = {"passing": 0, "warning": 1, "critical": 2}
DEFAULT_GATEWAY = "mesh-gateway"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="federation_command", metavar="SUBCOMMAND")
    p = sub.add_parser("status", help="Show every datacenter's servers, gateways and states")
    add_client_flags(p)
    p.add_argument("-wan", "--wan", action="store_true",
                   help="also list every member of the WAN pool")
    p.add_argument("-format", "--format", dest="format", default="text",
                   choices=("text", "json"), help="output format (text or json)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "federation_command", None) != "status":
        err("Usage: wanfed federation status [-wan] [-format=text|json] [options]")
        return 1
    try:
        client = client_from_args(args)
    except APIError as exc:
        err(f"Error initializing client: {exc}")
        return 1
    try:
        status = collect(client)
    except APIError as exc:
        err(f"Error reading the federation status: {exc}")
        return 1
    if args.format == "json":
        out(json.dumps(status, indent=2, sort_keys=True))
    else:
        out(render(status, wan=args.wan))
    return 0


# -- collecting ------------------------------------------------------------------------------


def _age(updated_at: str, now: float) -> float | None:
    """Seconds since an RFC 3339 UTC time; None for Go's zero time or a bad value."""
    if not updated_at or updated_at.startswith("0001-"):
        return None
    try:
        when = datetime.fromisoformat(updated_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, round(now - when.timestamp(), 1))


def node_health(csn: dict[str, Any]) -> str:
    """The worst status among a CheckServiceNode's checks (no checks: passing)."""
    worst = "passing"
    for check in csn.get("Checks") or []:
        status = check.get("Status", "critical")
        status = status if status in HEALTH_ORDER else "critical"
        if HEALTH_ORDER[status] > HEALTH_ORDER[worst]:
            worst = status
    return worst


def dc_health(gateways: list[dict[str, Any]]) -> str:
    """critical: every gateway critical; warning: some not passing; unknown: no gateway."""
    if not gateways:
        return "unknown"
    states = [g["Status"] for g in gateways]
    if all(s == "critical" for s in states):
        return "critical"
    if any(s != "passing" for s in states):
        return "warning"
    return "passing"


def _gateway(csn: dict[str, Any], source: str) -> dict[str, Any]:
    svc = csn.get("Service") or {}
    node = csn.get("Node") or {}
    wan = (svc.get("TaggedAddresses") or {}).get("wan") or {}
    if wan.get("Address"):
        address = f"{wan['Address']}:{wan.get('Port', '')}"
    else:
        address = f"{svc.get('Address') or node.get('Address', '')}:{svc.get('Port', '')}"
    return {
        "Node": node.get("Node", ""),
        "Service": svc.get("Service", ""),
        "Address": address,
        "Status": node_health(csn),
        "Source": source,
    }


def _optional(client: Client, path: str, dc: str) -> tuple[Any, str]:
    """(answer, "") ; (None, "") when the agent has no such endpoint or the feature is off (ACL
    endpoints answer 401 ``ACL support disabled`` with ACLs off, as Consul's); (None, error)
    otherwise."""
    try:
        return client.get_json(path, [("dc", dc)]), ""
    except UnexpectedResponse as exc:
        if exc.code == 404 and exc.body.startswith("404 page not found"):
            return None, ""
        if exc.code == 401 and "ACL support disabled" in exc.body:
            return None, ""
        return None, str(exc)
    except APIError as exc:
        return None, str(exc)


def _replication(primary_states: list[dict[str, Any]],
                 copies: list[dict[str, Any]]) -> dict[str, Any]:
    primary_index = max((s.get("ModifyIndex", 0) for s in primary_states), default=0)
    replicated = max((s.get("PrimaryModifyIndex", 0) for s in copies), default=0)
    mine = {s.get("Datacenter"): s.get("PrimaryModifyIndex", 0) for s in copies}
    theirs = {s.get("Datacenter"): s.get("ModifyIndex", 0) for s in primary_states}
    behind = sorted(str(dc) for dc in set(mine) | set(theirs) if mine.get(dc) != theirs.get(dc))
    return {
        "PrimaryIndex": primary_index,
        "ReplicatedIndex": replicated,
        "Lag": max(0, primary_index - replicated),
        "StatesBehind": behind,
    }


def collect(client: Client, now: Callable[[], float] = time.time) -> dict[str, Any]:
    """Every fact the status shows, as one JSON-able dict (raises APIError only when the agent
    itself cannot be asked)."""
    self_info = client.get_json("/v1/agent/self") or {}
    config = self_info.get("Config") or {}
    own = str(config.get("Datacenter", ""))
    primary = str(config.get("PrimaryDatacenter") or own)
    members = list(client.get_json("/v1/agent/members", [("wan", "1")]) or [])
    try:
        known = list(client.get_json("/v1/catalog/datacenters") or [])
    except APIError:
        known = []
    states, states_error = _optional(client, "/v1/internal/federation-states", primary)
    primary_states = list(states or [])
    by_dc = {s.get("Datacenter"): s for s in primary_states}
    names = set(known) | set(by_dc) | {own, primary}
    names |= {(m.get("Tags") or {}).get("dc", "") for m in members}
    names.discard("")
    t = now()
    ordered = sorted(names, key=lambda dc: (dc != primary, dc != own, dc))
    dcs = [_datacenter(client, dc, primary, by_dc.get(dc), primary_states, members, t)
           for dc in ordered]
    return {
        "Datacenter": own,
        "PrimaryDatacenter": primary,
        "Node": config.get("NodeName", ""),
        "FederationStatesError": states_error,
        "Datacenters": dcs,
        "WANMembers": [_member(m) for m in sorted(members, key=lambda m: m.get("Name", ""))],
    }


def _member(m: dict[str, Any]) -> dict[str, Any]:
    tags = m.get("Tags") or {}
    return {
        "Name": m.get("Name", ""),
        "Address": f"{m.get('Addr', '')}:{m.get('Port', '')}",
        "Status": STATUS.get(m.get("Status", 0), "unknown"),
        "Datacenter": tags.get("dc", ""),
        "Build": tags.get("build", "").split(":", 1)[0],
    }


def _datacenter(client: Client, dc: str, primary: str, state: dict[str, Any] | None,
                primary_states: list[dict[str, Any]], members: list[dict[str, Any]],
                now: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": dc, "Primary": dc == primary}
    leader, leader_error = _optional(client, "/v1/status/leader", dc)
    entry["Leader"] = leader or ""
    entry["LeaderError"] = leader_error
    entry["Members"] = [_member(m) for m in sorted(members, key=lambda m: m.get("Name", ""))
                        if (m.get("Tags") or {}).get("dc") == dc]
    stored = (state or {}).get("MeshGateways") or []
    service = ((stored[0].get("Service") or {}).get("Service") if stored else "") or DEFAULT_GATEWAY
    health, health_error = _optional(client, f"/v1/health/service/{service}", dc)
    if health is not None and not health_error:
        gateways = [_gateway(csn, "health") for csn in health]
    else:
        gateways = [_gateway(csn, "federation state") for csn in stored]
    entry["Gateways"] = gateways
    entry["GatewaysError"] = health_error
    entry["Health"] = dc_health(gateways)
    if state is None:
        entry["FederationState"] = None
    else:
        entry["FederationState"] = {
            "UpdatedAt": state.get("UpdatedAt", ""),
            "AgeSeconds": _age(str(state.get("UpdatedAt", "")), now),
            "ModifyIndex": state.get("ModifyIndex", 0),
            "PrimaryModifyIndex": state.get("PrimaryModifyIndex", 0),
        }
    entry["Replication"] = None
    entry["ReplicationError"] = ""
    if dc != primary:
        copies, error = _optional(client, "/v1/internal/federation-states", dc)
        if copies is not None:
            entry["Replication"] = _replication(primary_states, list(copies))
        entry["ReplicationError"] = error
    acl, acl_error = _optional(client, "/v1/acl/replication", dc)
    entry["ACLReplication"] = acl
    entry["ACLReplicationError"] = acl_error
    roots, roots_error = _optional(client, "/v1/connect/ca/roots", dc)
    entry["CA"] = None if roots is None else {
        "TrustDomain": roots.get("TrustDomain", ""),
        "ActiveRootID": roots.get("ActiveRootID", ""),
        "Roots": len(roots.get("Roots") or []),
    }
    entry["CAError"] = roots_error
    return entry


# -- rendering -------------------------------------------------------------------------------


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _indent(text: str, n: int = 4) -> list[str]:
    return [" " * n + line for line in text.splitlines()]


def render(status: dict[str, Any], wan: bool = False) -> str:
    """The text screens: one block per datacenter, then (``wan``) the WAN pool."""
    lines = [f"Agent: {status['Node']} in {status['Datacenter']} "
             f"(primary datacenter: {status['PrimaryDatacenter']})"]
    if status.get("FederationStatesError"):
        lines.append(f"Federation states: {status['FederationStatesError']}")
    for dc in status["Datacenters"]:
        lines += ["", _title(dc)]
        leader = dc["Leader"] or (f"unreachable ({dc['LeaderError']})" if dc["LeaderError"]
                                  else "none")
        lines.append(f"  Leader:            {leader}")
        lines.append("  WAN members:")
        if dc["Members"]:
            rows = [["Node", "Address", "Status"]]
            rows += [[m["Name"], m["Address"], m["Status"]] for m in dc["Members"]]
            lines += _indent(columnize(rows))
        else:
            lines.append("    (none)")
        source = f" (from the federation state: {dc['GatewaysError']})" \
            if dc["GatewaysError"] else ""
        lines.append(f"  Gateways: {dc['Health']}{source}")
        if dc["Gateways"]:
            rows = [["Node", "Service", "Address", "Health"]]
            rows += [[g["Node"], g["Service"], g["Address"], g["Status"]] for g in dc["Gateways"]]
            lines += _indent(columnize(rows))
        else:
            lines.append("    (none)")
        fs = dc["FederationState"]
        if fs is None:
            lines.append("  Federation state:  none in the primary")
        else:
            lines.append(f"  Federation state:  updated {fs['UpdatedAt']} "
                         f"({_fmt_age(fs['AgeSeconds'])}), ModifyIndex {fs['ModifyIndex']}")
        rep = dc["Replication"]
        if rep is not None:
            behind = f", behind: {', '.join(rep['StatesBehind'])}" if rep["StatesBehind"] else ""
            lines.append(f"  Replication:       index {rep['ReplicatedIndex']} of the primary's "
                         f"{rep['PrimaryIndex']} (lag {rep['Lag']}{behind})")
        elif dc["ReplicationError"]:
            lines.append(f"  Replication:       unknown ({dc['ReplicationError']})")
        lines += _acl_lines(dc) + _ca_lines(dc)
    if wan:
        lines += ["", "WAN pool:"]
        rows = [["Node", "Address", "Status", "DC", "Build"]]
        rows += [[m["Name"], m["Address"], m["Status"], m["Datacenter"], m["Build"]]
                 for m in status["WANMembers"]]
        lines += _indent(columnize(rows), 2)
    return "\n".join(lines)


def _title(dc: dict[str, Any]) -> str:
    marks = ["primary"] if dc["Primary"] else []
    if dc["Health"] == "critical":
        marks.append("CRITICAL: every gateway is critical")
    return f"Datacenter: {dc['Name']}" + (f" ({', '.join(marks)})" if marks else "")


def _acl_lines(dc: dict[str, Any]) -> list[str]:
    acl = dc["ACLReplication"]
    if acl is None:
        return [f"  ACL replication:   unknown ({dc['ACLReplicationError']})"] \
            if dc["ACLReplicationError"] else []
    if not acl.get("Enabled"):
        return ["  ACL replication:   disabled"]
    state = "running" if acl.get("Running") else "stopped"
    line = (f"  ACL replication:   {state}, {acl.get('ReplicationType', '')} from "
            f"{acl.get('SourceDatacenter', '')}, index {acl.get('ReplicatedIndex', 0)}, "
            f"last success {acl.get('LastSuccess', '')}")
    last_error = str(acl.get("LastError", ""))
    if last_error and not last_error.startswith("0001-"):
        line += f", last error {last_error}"
    return [line]


def _ca_lines(dc: dict[str, Any]) -> list[str]:
    ca = dc["CA"]
    if ca is None:
        return [f"  Connect CA:        unknown ({dc['CAError']})"] if dc["CAError"] else []
    return [f"  Connect CA:        trust domain {ca['TrustDomain']}, active root "
            f"{ca['ActiveRootID'] or '(none)'}, {ca['Roots']} root(s)"]
