# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed leave``: the agent leaves its pools gracefully and shuts down, as ``consul leave``."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import add_client_flags, agent_put, err

HELP = "Gracefully leave the cluster and shut the agent down"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.args:
        err("Error found unexpected args: [" + " ".join(args.args) + "]")
        return 1
    return agent_put(args, "/v1/agent/leave", "Error leaving", "Graceful leave complete")
