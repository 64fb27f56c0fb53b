# -*- test-case-name: tests.integration.gossip.test_gossip_members_api -*-
"""``wanfed members [-wan] [-http-addr=...] [-status=regex] [-detailed]``: the pool's members.

Reads ``/v1/agent/members`` (``?wan=1`` with ``-wan``) from the agent's HTTP API and prints
Consul's table: Node, Address, Status, Type, Build, Protocol, DC, Segment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Any

HELP = "Lists the members of a cluster (LAN pool, or the WAN pool with -wan)"

STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-wan", "--wan", action="store_true", help="list the WAN pool")
    parser.add_argument(
        "-http-addr",
        "--http-addr",
        default=os.environ.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500"),
        help="agent HTTP address (default $CONSUL_HTTP_ADDR or 127.0.0.1:8500)",
    )
    parser.add_argument("-status", "--status", default=".*", help="regex on the status")
    parser.add_argument("-detailed", "--detailed", action="store_true", help="show all tags")


def fetch(http_addr: str, wan: bool) -> list[dict[str, Any]]:
    base = http_addr if "://" in http_addr else f"http://{http_addr}"
    url = f"{base}/v1/agent/members" + ("?wan=1" if wan else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: list[dict[str, Any]] = json.loads(resp.read())
    return data


def rows(members: list[dict[str, Any]], status_re: str, detailed: bool) -> list[list[str]]:
    pattern = re.compile(status_re)
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
        members = fetch(args.http_addr, args.wan)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"Error retrieving members: {exc}", file=sys.stderr)
        return 1
    if args.detailed:
        header = ["Node", "Address", "Status", "Tags"]
    else:
        header = ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"]
    body = rows(members, args.status, args.detailed)
    if not body:
        return 2
    print(table(header, body))
    return 0
