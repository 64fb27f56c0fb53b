# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed keygen``: a new gossip encryption key (32 random bytes, standard base64), as
``consul keygen``."""

from __future__ import annotations

import argparse
import base64
import os

from wanfedtx.cli.httpapi import err, out

HELP = "Generates a new encryption key for gossip (encrypt)"
KEY_BYTES = 32


def configure(parser: argparse.ArgumentParser) -> None:
    """keygen takes no flags."""


def run(args: argparse.Namespace) -> int:
    try:
        key = os.urandom(KEY_BYTES)
    except OSError as exc:
        err(f"Error reading random data: {exc}")
        return 1
    if len(key) != KEY_BYTES:
        err("Couldn't read enough entropy. Generate more entropy!")
        return 1
    out(base64.b64encode(key).decode())
    return 0
