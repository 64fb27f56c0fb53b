# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed reload``: ask the agent to reload its configuration (``PUT /v1/agent/reload``), as
``consul reload``."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_from_args, err, out

HELP = "Triggers the agent to reload configuration files"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)


def run(args: argparse.Namespace) -> int:
    try:
        client_from_args(args).call("PUT", "/v1/agent/reload")
    except APIError as exc:
        err(f"Error reloading: {exc}")
        return 1
    out("Configuration reload triggered")
    return 0
