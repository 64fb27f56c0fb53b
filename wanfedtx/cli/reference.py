# -*- test-case-name: tests.unit.cli.test_cli_reference -*-
"""The command-line reference (``docs/cli-reference.md``), generated from the ``argparse`` parsers.

Every command and subcommand's ``-h`` text, at a fixed width so the output does not depend on
the terminal. Regenerate after changing a flag::

    python -m wanfedtx.cli.reference > docs/cli-reference.md

A unit test fails while the file and the parsers disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from wanfedtx.cli.main import build_parser

WIDTH = 100
HEADER = """# Command-line reference

Generated from the code by `python -m wanfedtx.cli.reference > docs/cli-reference.md` (a test
checks that this file matches): the `-h` text of every `wanfed` command and subcommand. How the
everyday commands behave, with examples: `docs/cli.md`.
"""


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            yield from dict.fromkeys(action.choices.values())


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for sub in _subcommands(parser):
        yield from _walk(sub)


def render() -> str:
    """The whole reference as Markdown."""
    parts = [HEADER]
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH + 2)  # argparse wraps at the terminal's width - 2
    try:
        for parser in _walk(build_parser()):
            parts.append(f"## `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(parts)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
