# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed operator raft list-peers`` and ``wanfed operator raft remove-peer``: the raft
configuration of the servers, as ``consul operator raft``.

``list-peers`` reads ``/v1/operator/raft/configuration`` (``-stale``: any server answers) and
prints Consul's ``Node  ID  Address  State  Voter  RaftProtocol`` table; ``remove-peer
-address=ip:port`` or ``-id=<id>`` sends ``DELETE /v1/operator/raft/peer``.
"""

from __future__ import annotations

import argparse
from typing import Any

from wanfedtx.cli.httpapi import (
    APIError,
    add_client_flags,
    client_or_none,
    columnize,
    err,
    out,
)

HELP = "Provides cluster-level tools for operators (operator raft list-peers|remove-peer)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="operator_command", metavar="SUBCOMMAND")
    raft = sub.add_parser("raft", help="Inspect and manipulate the raft configuration")
    raft_sub = raft.add_subparsers(dest="raft_command", metavar="SUBCOMMAND")
    p = raft_sub.add_parser("list-peers", help="Display the current raft peer configuration")
    add_client_flags(p, server=True)
    p = raft_sub.add_parser("remove-peer", help="Remove a server from the raft configuration")
    add_client_flags(p, server=True)
    p.add_argument("-address", default="", help="The address (ip:port) of the peer to remove")
    p.add_argument("-id", dest="peer_id", default="", help="The ID of the peer to remove")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "raft_command", None)
    if getattr(args, "operator_command", None) != "raft" or command is None:
        err("Usage: wanfed operator raft <list-peers|remove-peer> [options]")
        return 1
    return list_peers(args) if command == "list-peers" else remove_peer(args)


def peers_table(servers: list[dict[str, Any]]) -> str:
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for s in servers:
        protocol = str(s.get("ProtocolVersion") or "") or "<=1"
        rows.append([
            str(s.get("Node", "")),
            str(s.get("ID", "")),
            str(s.get("Address", "")),
            "leader" if s.get("Leader") else "follower",
            "true" if s.get("Voter") else "false",
            protocol,
        ])
    return columnize(rows)


def list_peers(args: argparse.Namespace) -> int:
    client = client_or_none(args, "Error initializing client: ")
    if client is None:
        return 1
    try:
        reply = client.get_json("/v1/operator/raft/configuration")
    except APIError as exc:
        err(f"Error getting peers: Failed to retrieve raft configuration: {exc}")
        return 1
    out(peers_table((reply or {}).get("Servers") or []))
    return 0


def remove_peer(args: argparse.Namespace) -> int:
    if not args.address and not args.peer_id:
        err("Error removing peer: an address or id is required for the peer to remove")
        return 1
    if args.address and args.peer_id:
        err("Error removing peer: cannot give both an address and id")
        return 1
    client = client_or_none(args, "Error initializing client: ")
    if client is None:
        return 1
    query = [("address", args.address)] if args.address else [("id", args.peer_id)]
    try:
        client.call("DELETE", "/v1/operator/raft/peer", list(query))
    except APIError as exc:
        err(f"Error removing peer: {exc}")
        return 1
    if args.address:
        out(f'Removed peer with address "{args.address}"')
    else:
        out(f'Removed peer with id "{args.peer_id}"')
    return 0
