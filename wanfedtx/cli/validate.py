# -*- test-case-name: tests.unit.cli.test_cli_agent_verbs -*-
"""``wanfed validate [-quiet] FILE_OR_DIR...``: check configuration files with the agent's own
config builder, as ``consul validate``: ``Configuration is valid!`` (exit 0) or
``Config validation failed: <the agent's one-line error>`` (exit 1)."""

from __future__ import annotations

import argparse

from wanfedtx.cli.httpapi import err, out
from wanfedtx.config import ConfigError, LoadOptions, load

HELP = "Validate config files/directories"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-quiet", action="store_true",
                        help="Print nothing on success; only the exit code tells")
    parser.add_argument("-config-format", dest="config_format", choices=("hcl", "json"),
                        default=None, help="Config files are in this format whatever the "
                        "extension")
    parser.add_argument("paths", nargs="*", metavar="FILE_OR_DIR")


def run(args: argparse.Namespace) -> int:
    if not args.paths:
        err("Must specify at least one config file or directory")
        return 1
    try:
        result = load(LoadOptions(config_files=tuple(args.paths),
                                  config_format=args.config_format))
    except ConfigError as exc:
        err(f"Config validation failed: {exc}")
        return 1
    for warning in result.warnings:
        err(warning)
    if not args.quiet:
        out("Configuration is valid!")
    return 0
