# -*- test-case-name: tests.unit.test_cli -*-
"""``wanfed version``: print the version of this build."""

from __future__ import annotations

import argparse

from wanfedtx import __version__

HELP = "Print the wanfed version."


def configure(parser: argparse.ArgumentParser) -> None:
    """No flags."""


def run(args: argparse.Namespace) -> int:
    print(f"wanfed v{__version__}")
    return 0
