# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed force-leave [-prune] NODE``: mark a failed member as left, as ``consul force-leave``
(``-prune`` also forgets it)."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_from_args, err

HELP = "Forces a member of the cluster to enter the \"left\" state"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("-prune", action="store_true",
                        help="Remove the node from the member list entirely")
    parser.add_argument("nodes", nargs="*", metavar="NODE")


def run(args: argparse.Namespace) -> int:
    if len(args.nodes) != 1:
        err("A single node name must be specified to force leave.")
        err("Usage: wanfed force-leave [options] NODE")
        return 1
    try:
        client = client_from_args(args)
        client.call("PUT", f"/v1/agent/force-leave/{args.nodes[0]}",
                    [("prune", None)] if args.prune else [])
    except APIError as exc:
        err(f"Error force leaving: {exc}")
        return 1
    return 0
