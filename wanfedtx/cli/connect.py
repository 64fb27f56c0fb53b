# -*- test-case-name: tests.unit.cli.test_cli_connect_ca -*-
"""``wanfed connect ca get-config`` and ``wanfed connect ca set-config -config-file FILE``: the
Connect CA configuration, as ``consul connect ca``.

``get-config`` prints ``GET /v1/connect/ca/configuration`` as indented JSON. ``set-config``
reads a JSON file (``{"Provider": "consul", "Config": {...}}``) and sends it with ``PUT
/v1/connect/ca/configuration``; a new root (``PrivateKey``/``RootCert``) rotates the CA.
Consul's lines: ``Configuration updated!``, ``-config-file is required``, ``Error reading config
file: ...``, ``Error parsing config file: ...``, ``Error setting CA configuration: ...``,
``Error querying CA configuration: ...``.
"""

from __future__ import annotations

import argparse
import json

from wanfedtx import jsondecode
from wanfedtx.cli.httpapi import APIError, add_client_flags, client_or_none, err, out

HELP = "Interact with the Connect CA (connect ca get-config|set-config)"
USAGE = "Usage: wanfed connect ca <get-config|set-config> [options]"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="connect_command", metavar="SUBCOMMAND")
    ca = sub.add_parser("ca", help="Interact with the Connect Certificate Authority (CA)")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="SUBCOMMAND")
    p = ca_sub.add_parser("get-config", help="Display the current Connect CA configuration")
    add_client_flags(p)
    p = ca_sub.add_parser("set-config", help="Modify the current Connect CA configuration")
    add_client_flags(p)
    p.add_argument("-config-file", "--config-file", dest="config_file", default="",
                   help="The path to the config file to use")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "ca_command", None)
    if getattr(args, "connect_command", None) != "ca" or command is None:
        err(USAGE)
        return 1
    return get_config(args) if command == "get-config" else set_config(args)


def get_config(args: argparse.Namespace) -> int:
    client = client_or_none(args, "Error connecting to Consul agent: ")
    if client is None:
        return 1
    try:
        config = client.get_json("/v1/connect/ca/configuration")
    except APIError as exc:
        err(f"Error querying CA configuration: {exc}")
        return 1
    out(json.dumps(config, indent=2))
    return 0


def set_config(args: argparse.Namespace) -> int:
    if not args.config_file:
        err("-config-file is required")
        return 1
    try:
        with open(args.config_file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        err(f"Error reading config file: {exc}")
        return 1
    try:
        config = jsondecode.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        err(f"Error parsing config file: {exc}")
        return 1
    if not isinstance(config, dict):
        err("Error parsing config file: the file must hold a JSON object")
        return 1
    config.pop("ForceWithoutCrossSigning", None)  # the reference's client drops it
    client = client_or_none(args, "Error connecting to Consul agent: ")
    if client is None:
        return 1
    try:
        client.call("PUT", "/v1/connect/ca/configuration", body=json.dumps(config).encode())
    except APIError as exc:
        err(f"Error setting CA configuration: {exc}")
        return 1
    out("Configuration updated!")
    return 0
