# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed leave``: the agent leaves its pools gracefully and shuts down, as ``consul leave``."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_from_args, err, out

HELP = "Gracefully leave the cluster and shut the agent down"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.args:
        err("Error found unexpected args: [" + " ".join(args.args) + "]")
        return 1
    try:
        client_from_args(args).call("PUT", "/v1/agent/leave")
    except APIError as exc:
        err(f"Error leaving: {exc}")
        return 1
    out("Graceful leave complete")
    return 0
