# -*- test-case-name: tests.unit.tls.test_tls_cli -*-
"""``wanfed tls``: create the agent CA and certificates, like ``consul tls ca/cert create``.

* ``wanfed tls ca create [-domain D] [-days N] [-common-name CN] [-name-constraint
  [-additional-name-constraint NAME ...]]`` writes ``<domain>-agent-ca.pem`` and
  ``<domain>-agent-ca-key.pem`` in the current directory.
* ``wanfed tls cert create (-server|-client|-cli) [-dc DC] [-node NODE] [-domain D] [-days N]
  [-additional-dnsname NAME ...] [-additional-ipaddress IP ...] [-ca FILE] [-key FILE]`` writes
  ``<dc>-<kind>-<domain>-<n>.pem`` and ``-<n>-key.pem`` (first free ``n``) in the current directory.

Output and error strings are Consul's (``==> Saved ...``, ``-node requires -server``, ...). Errors
go to stderr with exit code 1; files are never overwritten; keys are written with mode 0600.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wanfedtx.tls import certs
from wanfedtx.tls.errors import TLSError

HELP = "Create the agent CA and server/client/cli certificates (like `consul tls`)."

SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."""


def _go_bool(value: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add a Consul-style ``-name`` flag (``--name`` works too)."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    _flag(
        parser,
        name,
        nargs="?",
        const=True,
        default=False,
        type=_go_bool,
        metavar="BOOL",
        help=help,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_tls_parser=parser)
    groups = parser.add_subparsers(dest="tls_group", metavar="SUBCOMMAND")

    ca = groups.add_parser("ca", help="Manage the agent CA.", description="Manage the agent CA.")
    ca.set_defaults(_tls_parser=ca)
    ca_cmds = ca.add_subparsers(dest="tls_cmd", metavar="SUBCOMMAND")
    ca_create = ca_cmds.add_parser(
        "create", help="Create a new agent CA.", description="Create a new agent CA."
    )
    _flag(
        ca_create,
        "days",
        type=int,
        default=certs.DEFAULT_CA_DAYS,
        help="Number of days the CA is valid for. Defaults to 1825 days (about 5 years).",
    )
    _flag(
        ca_create,
        "domain",
        default=certs.DEFAULT_DOMAIN,
        help="The DNS domain of the cluster, used in the file names and name constraints. "
        "Defaults to consul.",
    )
    _flag(
        ca_create,
        "common-name",
        default="",
        help="Common Name of the CA. Defaults to 'Consul Agent CA <serial>'.",
    )
    _bool_flag(
        ca_create,
        "name-constraint",
        "Add X.509 name constraints: the CA then only signs names under -domain, "
        "localhost and each -additional-name-constraint.",
    )
    _flag(
        ca_create,
        "additional-name-constraint",
        action="append",
        default=[],
        help="An extra permitted DNS name for -name-constraint (repeatable).",
    )
    ca_create.set_defaults(_tls_run=_run_ca_create)

    cert = groups.add_parser(
        "cert", help="Manage agent certificates.", description="Manage agent certificates."
    )
    cert.set_defaults(_tls_parser=cert)
    cert_cmds = cert.add_subparsers(dest="tls_cmd", metavar="SUBCOMMAND")
    cc = cert_cmds.add_parser(
        "create", help="Create a new certificate.", description="Create a new certificate."
    )
    _flag(
        cc,
        "ca",
        default="#DOMAIN#-agent-ca.pem",
        help="Path to the CA certificate. Defaults to #DOMAIN#-agent-ca.pem.",
    )
    _flag(
        cc,
        "key",
        default="#DOMAIN#-agent-ca-key.pem",
        help="Path to the CA key. Defaults to #DOMAIN#-agent-ca-key.pem.",
    )
    _bool_flag(cc, "server", "Generate a server certificate.")
    _bool_flag(cc, "client", "Generate a client certificate.")
    _bool_flag(cc, "cli", "Generate a cli certificate.")
    _flag(
        cc,
        "node",
        default="",
        help="With -server: add the DNS name <node>.server.<datacenter>.<domain>.",
    )
    _flag(
        cc,
        "days",
        type=int,
        default=certs.DEFAULT_CERT_DAYS,
        help="Number of days the certificate is valid for. Defaults to 365.",
    )
    _flag(cc, "dc", default=certs.DEFAULT_DC, help="The datacenter. Defaults to dc1.")
    _flag(cc, "domain", default=certs.DEFAULT_DOMAIN, help="The domain. Defaults to consul.")
    _flag(
        cc,
        "additional-dnsname",
        action="append",
        default=[],
        help="An additional DNS name for the Subject Alternative Names; localhost is always "
        "included (repeatable).",
    )
    _flag(
        cc,
        "additional-ipaddress",
        action="append",
        default=[],
        help="An additional IP address for the Subject Alternative Names; 127.0.0.1 is always "
        "included (repeatable).",
    )
    cc.set_defaults(_tls_run=_run_cert_create)


def _error(msg: str) -> int:
    print(msg, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    runner = getattr(args, "_tls_run", None)
    if runner is None:
        args._tls_parser.print_help(sys.stderr)
        return 1
    try:
        result: int = runner(args)
    except TLSError as e:
        return _error(str(e))
    return result


def _run_ca_create(args: argparse.Namespace) -> int:
    cert_name, key_name = certs.ca_file_names(args.domain)
    for name in (cert_name, key_name):
        if Path(name).exists():
            return _error(f"{name} already exists.")
    ca = certs.create_ca(
        args.domain,
        args.days,
        args.common_name or None,
        name_constraint=args.name_constraint,
        additional_name_constraints=args.additional_name_constraint,
    )
    certs.write_pair(ca, cert_name, key_name)
    print(f"==> Saved {cert_name}")
    print(f"==> Saved {key_name}")
    return 0


def _run_cert_create(args: argparse.Namespace) -> int:
    if not args.ca:
        return _error("Please provide the ca")
    if not args.key:
        return _error("Please provide the key")
    kinds = [k for k in certs.CERT_KINDS if getattr(args, k)]
    if len(kinds) != 1:
        return _error("Please provide either -server, -client, or -cli")
    kind = kinds[0]
    if args.node and kind != "server":
        return _error("-node requires -server")
    # Validate names before touching the disk, so a typo costs nothing.
    certs.cert_names(
        kind,
        dc=args.dc,
        node=args.node,
        domain=args.domain,
        additional_dnsnames=args.additional_dnsname,
        additional_ipaddresses=args.additional_ipaddress,
    )
    cert_path, key_path = certs.next_free_cert_paths(
        ".", certs.cert_file_prefix(kind, args.dc, args.domain)
    )
    ca_file = args.ca.replace("#DOMAIN#", args.domain, 1)
    key_file = args.key.replace("#DOMAIN#", args.domain, 1)
    try:
        ca = certs.read_ca(ca_file, key_file)
    except TLSError as e:
        hint = ""
        if str(e).startswith("Error reading CA"):
            hint = " (create it with `wanfed tls ca create`, or pass -ca and -key)"
        return _error(f"{e}{hint}")
    if kind == "server":
        print(SERVER_WARNING)
    print(f"==> Using {ca_file} and {key_file}")
    pair = certs.create_cert(
        ca,
        kind,
        dc=args.dc,
        node=args.node,
        domain=args.domain,
        days=args.days,
        additional_dnsnames=args.additional_dnsname,
        additional_ipaddresses=args.additional_ipaddress,
    )
    certs.write_pair(pair, cert_path, key_path)
    print(f"==> Saved {cert_path}")
    print(f"==> Saved {key_path}")
    return 0
