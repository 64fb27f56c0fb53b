# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed monitor [-log-level=info] [-log-json]``: stream the agent's log lines
(``GET /v1/agent/monitor``) until Ctrl-C (exit 0), as ``consul monitor``. If the agent ends the
stream the command says so and exits 1."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import (
    APIError,
    UnexpectedResponse,
    add_client_flags,
    client_from_args,
    err,
    out,
)
from wanfedtx.cli.interrupt import stop_on_ctrl_c

HELP = "Stream logs from a wanfed agent"


def configure(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)
    parser.add_argument("-log-level", dest="log_level", default="INFO",
                        help="Log level of the streamed lines (trace, debug, info, warn, err)")
    parser.add_argument("-log-json", dest="log_json", action="store_true",
                        help="Stream the lines as JSON")


def run(args: argparse.Namespace) -> int:
    stop_on_ctrl_c()
    try:
        return _monitor(args)
    except KeyboardInterrupt:  # Ctrl-C: the normal way to stop
        return 0


def _monitor(args: argparse.Namespace) -> int:
    query: list[tuple[str, str | None]] = [("loglevel", args.log_level)]
    if args.log_json:
        query.append(("logjson", None))
    try:
        client = client_from_args(args)
        resp = client.send("GET", "/v1/agent/monitor", query, stream=True, timeout=None)
        if resp.status != 200:
            raise UnexpectedResponse(resp.status, resp.body)
    except APIError as exc:
        err(f"Error starting monitor: {exc}")
        return 1
    for line in resp.lines or iter(()):
        out(line.rstrip(b"\n"))
    err("Remote side ended the monitor! This usually means that the\n"
        "remote side has exited or crashed.")
    return 1
