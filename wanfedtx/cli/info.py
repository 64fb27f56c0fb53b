# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed info``: the agent's ``Stats`` from ``/v1/agent/self``, printed as ``consul info``
does (sorted ``section:`` lines, each followed by its sorted ``\\tkey = value`` lines)."""

from __future__ import annotations

import argparse
from typing import Any

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_from_args, err, out

HELP = "Provides debugging information for operators"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)


def render(stats: dict[str, Any]) -> str:
    lines = []
    for section in sorted(stats):
        lines.append(f"{section}:")
        values = stats[section]
        if not isinstance(values, dict):
            continue
        for key in sorted(values):
            lines.append(f"\t{key} = {values[key]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        body = client_from_args(args).get_json("/v1/agent/self")
    except APIError as exc:
        err(f"Error querying agent: {exc}")
        return 1
    stats = body.get("Stats") if isinstance(body, dict) else None
    out(render(stats if isinstance(stats, dict) else {}))
    return 0
