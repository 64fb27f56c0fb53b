# -*- test-case-name: tests.integration.gossip.test_gossip_members_api -*-
"""``wanfed members [-wan] [-status=regex] [-detailed]``: the pool's members.

Takes the client flags of every HTTP verb (``-http-addr``, ``-token``, ...:
``wanfedtx.cli.httpapi``).

Reads ``/v1/agent/members`` (``?wan=1`` with ``-wan``) from the agent's HTTP API and prints
Consul's table: Node, Address, Status, Type, Build, Protocol, DC, Segment.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_from_args

HELP = "Lists the members of a cluster (LAN pool, or the WAN pool with -wan)"

STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("-wan", "--wan", action="store_true", help="list the WAN pool")
    parser.add_argument("-status", "--status", default=".*", help="regex on the status")
    parser.add_argument("-detailed", "--detailed", action="store_true", help="show all tags")


def fetch(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``/v1/agent/members`` (``?wan=1`` with ``-wan``) as the client flags say."""
    client = client_from_args(args)
    data = client.get_json("/v1/agent/members", [("wan", "1")] if args.wan else [])
    return list(data or [])


def rows(members: list[dict[str, Any]], pattern: re.Pattern[str],
         detailed: bool) -> list[list[str]]:
    out = []
    for m in sorted(members, key=lambda m: m["Name"]):
        status = STATUS.get(m.get("Status", 0), "unknown")
        if not pattern.search(status):
            continue
        tags = m.get("Tags") or {}
        addr = f"{m['Addr']}:{m['Port']}"
        if detailed:
            out.append(
                [m["Name"], addr, status, ",".join(f"{k}={v}" for k, v in sorted(tags.items()))]
            )
            continue
        server = tags.get("role") == "consul"
        build = tags.get("build", "").split(":", 1)[0]
        out.append(
            [
                m["Name"],
                addr,
                status,
                "server" if server else "client",
                build,
                tags.get("vsn", ""),
                tags.get("dc", ""),
                "<all>" if server else tags.get("segment", ""),
            ]
        )
    return out


def table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    )


def run(args: argparse.Namespace) -> int:
    try:
        pattern = re.compile(args.status)
    except re.error as exc:
        print(f"Failed to compile status regexp: {exc}", file=sys.stderr)
        return 1
    try:
        members = fetch(args)
    except APIError as exc:
        print(f"Error retrieving members: {exc}", file=sys.stderr)
        return 1
    if args.detailed:
        header = ["Node", "Address", "Status", "Tags"]
    else:
        header = ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"]
    body = rows(members, pattern, args.detailed)
    if not body:
        return 2
    print(table(header, body))
    return 0
