# -*- test-case-name: tests.unit.test_cli,tests.unit.agent.test_agent_units -*-
"""Entry point of the ``wanfed`` command: dispatches to one module per subcommand.

Each subcommand lives in its own module that exposes ``configure(parser)`` (adds its flags to an
``argparse`` parser) and ``run(args) -> int`` (does the work, returns the exit code). Flags use
Consul's single-dash spelling (``-datacenter=dc1``); ``--datacenter`` works too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from wanfedtx import __version__


class CommandModule(Protocol):
    """What a subcommand module provides."""

    HELP: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> module path; modules are imported only when their command runs or help is shown.
COMMANDS: dict[str, str] = {
    "version": "wanfedtx.cli.version",
    "agent": "wanfedtx.cli.agent",
    "gateway": "wanfedtx.cli.gateway",
    "tls": "wanfedtx.cli.tls",
    "members": "wanfedtx.cli.members",
    "demo": "wanfedtx.cli.demo",
    # Consul's everyday verbs (docs/cli.md)
    "kv": "wanfedtx.cli.kv",
    "catalog": "wanfedtx.cli.catalog",
    "join": "wanfedtx.cli.join",
    "leave": "wanfedtx.cli.leave",
    "force-leave": "wanfedtx.cli.force_leave",
    "operator": "wanfedtx.cli.operator",
    "validate": "wanfedtx.cli.validate",
    "keygen": "wanfedtx.cli.keygen",
    "reload": "wanfedtx.cli.reload",
    "monitor": "wanfedtx.cli.monitor",
    "info": "wanfedtx.cli.info",
    "completion": "wanfedtx.cli.completion",
    "federation": "wanfedtx.cli.federation",
    "acl": "wanfedtx.cli.acl",
    "connect": "wanfedtx.cli.connect",
    "snapshot": "wanfedtx.cli.snapshot",
}
# Commands whose flag errors exit 1, as Consul's do (argparse's own code is 2).
USAGE_EXIT_1 = frozenset({
    "kv", "catalog", "join", "leave", "force-leave", "operator", "validate", "keygen", "reload",
    "monitor", "info", "completion", "members", "federation", "acl", "connect", "snapshot",
})


class UsageError(Exception):
    """A command line that cannot be run; the message is shown to the user."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, just that subcommand is configured (the others
    are listed without importing their modules: ``wanfed kv get`` starts in a fraction of the
    time it takes to import every command)."""
    parser = argparse.ArgumentParser(
        prog="wanfed",
        description="WAN federation via mesh gateways (Twisted implementation).",
    )
    parser.add_argument("-version", "--version", action="version", version=f"wanfed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        module: CommandModule = importlib.import_module(module_path)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 2 and argv and argv[0] in USAGE_EXIT_1:
            return 1
        raise
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 1
    try:
        result: int = run(args)
    except UsageError as e:
        print(f"wanfed {args.command}: {e}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
