# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed reload``: ask the agent to reload its configuration (``PUT /v1/agent/reload``), as
``consul reload``."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import add_client_flags, agent_put

HELP = "Triggers the agent to reload configuration files"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)


def run(args: argparse.Namespace) -> int:
    return agent_put(args, "/v1/agent/reload", "Error reloading", "Configuration reload triggered")
