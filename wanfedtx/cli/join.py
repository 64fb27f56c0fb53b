# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed join [-wan] ADDRESS...``: ask the agent to join a cluster, as ``consul join``."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_or_none, err, out

HELP = "Tell the agent to join a cluster (LAN, or the WAN pool with -wan)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("-wan", action="store_true", help="Join the WAN pool (servers only)")
    parser.add_argument("addrs", nargs="*", metavar="ADDRESS")


def run(args: argparse.Namespace) -> int:
    if not args.addrs:
        err("At least one address to join must be specified.")
        err("Usage: wanfed join [options] ADDRESS...")
        return 1
    client = client_or_none(args)
    if client is None:
        return 1
    joined = 0
    for addr in args.addrs:
        try:
            client.call("PUT", f"/v1/agent/join/{addr}", [("wan", "1")] if args.wan else [])
        except APIError as exc:
            err(f"Error joining address '{addr}': {exc}")
            continue
        joined += 1
    if not joined:
        err("Failed to join any nodes.")
        return 1
    out(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0
