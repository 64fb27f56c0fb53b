# -*- test-case-name: tests.unit.cli.test_cli_http_verbs -*-
"""``wanfed catalog datacenters|nodes|services``: the catalog, as ``consul catalog``.

``datacenters`` prints one name per line; ``nodes`` Consul's ``Node  ID  Address  DC`` table
(``-detailed`` adds the full ID, tagged addresses and metadata; ``-service`` lists the nodes of a
service; ``-node-meta k=v`` filters); ``services`` the sorted names (``-tags`` adds each one's
tags, ``-node`` lists one node's services). An empty answer says so on stderr and exits 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from wanfedtx import jsondecode
from wanfedtx.cli.httpapi import (
    APIError,
    Client,
    UnexpectedResponse,
    add_client_flags,
    client_or_none,
    columnize,
    err,
    no_extra_args,
    out,
    tabwrite,
)

HELP = "Interact with the catalog (datacenters, nodes, services)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    p = sub.add_parser("datacenters", help="Lists all known datacenters")
    add_client_flags(p)
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)

    p = sub.add_parser("nodes", help="Lists all nodes in the given datacenter")
    add_client_flags(p, server=True)
    p.add_argument("-detailed", action="store_true", help="Full IDs, tagged addresses, meta")
    p.add_argument("-node-meta", dest="node_meta", action="append", default=[],
                   metavar="KEY=VALUE", help="Only nodes with this metadata (repeatable)")
    p.add_argument("-service", default="", help="Only nodes providing this service")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)

    p = sub.add_parser("services", help="Lists all registered services in a datacenter")
    add_client_flags(p, server=True)
    p.add_argument("-node", default="", help="Only the services of this node")
    p.add_argument("-tags", action="store_true", help="Show each service's tags")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "catalog_command", None)
    if command is None:
        err("Usage: wanfed catalog <subcommand> [options]\n\n"
            "Subcommands: datacenters, nodes, services")
        return 1
    problem = no_extra_args(args.args)
    if problem:
        err(problem)
        return 1
    client = client_or_none(args)
    if client is None:
        return 1
    handler = {"datacenters": datacenters, "nodes": nodes, "services": services}[command]
    return handler(client, args)


def datacenters(client: Client, args: argparse.Namespace) -> int:
    try:
        dcs = client.get_json("/v1/catalog/datacenters") or []
    except APIError as exc:
        err(f"Error listing datacenters: {exc}")
        dcs = []
    if not dcs:
        err("No datacenters found")
        return 1
    for dc in dcs:
        out(str(dc))
    return 0


def _kv(mapping: dict[str, Any] | None, sep: str) -> str:
    return sep.join(f"{k}={v}" for k, v in sorted((mapping or {}).items()))


def node_rows(found: list[dict[str, Any]], detailed: bool) -> list[list[str]]:
    """Consul's nodes table (header first)."""
    if detailed:
        rows = [["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]]
        for n in found:
            rows.append([n.get("Node", ""), n.get("ID", ""), n.get("Address", ""),
                         n.get("Datacenter", ""), _kv(n.get("TaggedAddresses"), ", "),
                         _kv(n.get("Meta"), ", ")])
        return rows
    rows = [["Node", "ID", "Address", "DC"]]
    for n in found:
        node_id = str(n.get("ID", ""))
        cut = node_id.find("-")
        rows.append([n.get("Node", ""), node_id[:cut] if cut > 0 else node_id,
                     n.get("Address", ""), n.get("Datacenter", "")])
    return rows


def _meta_filter(pairs: list[str]) -> dict[str, str]:
    wanted = {}
    for pair in pairs:
        k, _, v = pair.partition("=")
        wanted[k] = v
    return wanted


def nodes(client: Client, args: argparse.Namespace) -> int:
    try:
        if args.service:
            rows = client.get_json(f"/v1/catalog/service/{args.service}") or []
            found = [
                {"ID": r.get("ID", ""), "Node": r.get("Node", ""), "Address": r.get("Address", ""),
                 "Datacenter": r.get("Datacenter", ""),
                 "TaggedAddresses": r.get("TaggedAddresses"), "Meta": r.get("NodeMeta")}
                for r in rows
            ]
        else:
            found = client.get_json("/v1/catalog/nodes") or []
    except APIError as exc:
        err(f"Error listing nodes: {exc}")
        return 1
    wanted = _meta_filter(args.node_meta)
    found = [n for n in found
             if all((n.get("Meta") or {}).get(k) == v for k, v in wanted.items())]
    if not found:
        err("No nodes match the given query - try expanding your search.")
        return 0
    out(columnize(node_rows(found, args.detailed)))
    return 0


def services(client: Client, args: argparse.Namespace) -> int:
    found: dict[str, list[str]] = {}
    try:
        if args.node:
            resp = client.send("GET", f"/v1/catalog/node/{args.node}")
            if resp.status not in (200, 404):
                raise UnexpectedResponse(resp.status, resp.body)
            node = jsondecode.loads(resp.body or b"null") if resp.status == 200 else None
            for svc in ((node or {}).get("Services") or {}).values():
                found.setdefault(svc.get("Service", ""), []).extend(svc.get("Tags") or [])
        else:
            found = {k: list(v or []) for k, v in (client.get_json("/v1/catalog/services")
                                                   or {}).items()}
    except (APIError, ValueError) as exc:
        what = "services for node" if args.node else "services"
        err(f"Error listing {what}: {exc}")
        return 1
    if not found:
        err("No services match the given query - try expanding your search.")
        return 0
    names = sorted(found)
    if args.tags:
        table = tabwrite([[name, ",".join(sorted(found[name]))] for name in names])
        out("\n".join(line.rstrip() for line in table.splitlines()))
        return 0
    for name in names:
        out(name)
    return 0
