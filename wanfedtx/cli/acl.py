# -*- test-case-name: tests.unit.acl.test_acl_cli -*-
"""``wanfed acl``: ``bootstrap``, ``policy create``, ``token create``, ``token read``, as
``consul acl ...`` prints them (token values from column 19, policy values from column 15), and
``set-agent-token TYPE TOKEN`` (``PUT /v1/agent/token/<type>``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wanfedtx import jsondecode
from wanfedtx.cli.httpapi import (
    APIError,
    add_client_flags,
    client_from_args,
    err,
    out,
)

HELP = "Interact with Consul's ACLs"
USAGE = (
    "Usage: wanfed acl <bootstrap|policy create|token create|token read|set-agent-token> [options]"
)
#: ``set-agent-token``'s TYPE -> the URL's name (``master`` is Consul 1.8's name for agent_master)
AGENT_TOKEN_TYPES = {
    "default": "default",
    "agent": "agent",
    "master": "agent_master",
    "agent_master": "agent_master",
    "agent_recovery": "agent_master",
    "replication": "replication",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="acl_command", metavar="SUBCOMMAND")
    p = sub.add_parser("bootstrap", help="Bootstrap Consul's ACL system")
    add_client_flags(p)
    policy = sub.add_parser("policy", help="Manage Consul's ACL policies")
    psub = policy.add_subparsers(dest="acl_sub", metavar="SUBCOMMAND")
    p = psub.add_parser("create", help="Create an ACL policy")
    add_client_flags(p)
    p.add_argument("-name", default="", help="The new policy's name")
    p.add_argument("-description", default="", help="A description of the policy")
    p.add_argument("-rules", default="", help="The policy rules: text, @file or - for stdin")
    p.add_argument(
        "-datacenter",
        "-valid-datacenter",
        action="append",
        default=[],
        dest="datacenters",
        help="Datacenter where the policy is valid (repeatable)",
    )
    p = psub.add_parser("list", help="List ACL policies")
    add_client_flags(p)
    p = psub.add_parser("read", help="Read an ACL policy")
    add_client_flags(p)
    p.add_argument("-id", dest="policy_id", default="", help="The ID of the policy")
    p.add_argument("-name", default="", help="The name of the policy")
    p = psub.add_parser("delete", help="Delete an ACL policy")
    add_client_flags(p)
    p.add_argument("-id", dest="policy_id", default="", help="The ID of the policy")
    p = sub.add_parser("set-agent-token", help="Assign tokens for the Consul Agent's usage")
    add_client_flags(p)
    p.add_argument("agent_token_args", nargs="*", metavar="TYPE TOKEN")
    token = sub.add_parser("token", help="Manage Consul's ACL tokens")
    tsub = token.add_subparsers(dest="acl_sub", metavar="SUBCOMMAND")
    p = tsub.add_parser("create", help="Create an ACL token")
    add_client_flags(p)
    p.add_argument("-description", default="", help="A description of the token")
    p.add_argument("-policy-id", action="append", default=[], dest="policy_ids")
    p.add_argument("-policy-name", action="append", default=[], dest="policy_names")
    p.add_argument("-local", action="store_true", help="Create a datacenter-local token")
    p = tsub.add_parser("read", help="Read an ACL token")
    add_client_flags(p)
    p.add_argument("-id", dest="token_id", default="", help="The accessor ID of the token")
    p.add_argument("-self", dest="self_", action="store_true", help="Read the token in use")
    p = tsub.add_parser("list", help="List ACL tokens")
    add_client_flags(p)
    p = tsub.add_parser("delete", help="Delete an ACL token")
    add_client_flags(p)
    p.add_argument("-id", dest="token_id", default="", help="The accessor ID of the token")


def _go_time(value: str) -> str:
    """RFC3339 UTC -> Go's default time layout."""
    if value.endswith("Z") and "T" in value:
        return value[:-1].replace("T", " ") + " +0000 UTC"
    return value


def _token_text(t: dict[str, Any]) -> str:
    lines = [
        f"AccessorID:       {t.get('AccessorID', '')}",
        f"SecretID:         {t.get('SecretID', '')}",
        f"Description:      {t.get('Description', '')}",
        f"Local:            {'true' if t.get('Local') else 'false'}",
        f"Create Time:      {_go_time(str(t.get('CreateTime', '')))}",
    ]
    if t.get("ExpirationTime"):
        lines.append(f"Expiration Time:  {_go_time(str(t['ExpirationTime']))}")
    lines.append("Policies:")
    lines += [f"   {p.get('ID', '')} - {p.get('Name', '')}" for p in t.get("Policies") or []]
    return "\n".join(lines)


def _policy_text(p: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"ID:           {p.get('ID', '')}",
            f"Name:         {p.get('Name', '')}",
            f"Description:  {p.get('Description', '')}",
            f"Datacenters:  {', '.join(p.get('Datacenters') or [])}",
            "Rules:",
            str(p.get("Rules", "")),
        ]
    )


def _rules(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as f:
            return f.read()
    return value


def _json(resp_body: bytes) -> dict[str, Any]:
    try:
        value = jsondecode.loads(resp_body or b"null")
    except ValueError as exc:
        raise APIError(f"invalid JSON from the agent: {exc}") from None
    if not isinstance(value, dict):
        raise APIError("unexpected reply from the agent")
    return value


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "acl_command", None)
    sub = getattr(args, "acl_sub", None)
    try:
        if command == "bootstrap":
            return _bootstrap(args)
        if command == "set-agent-token":
            return _set_agent_token(args)
        if command == "policy" and sub == "create":
            return _policy_create(args)
        if command == "token" and sub == "create":
            return _token_create(args)
        if command == "token" and sub == "read":
            return _token_read(args)
        if command == "token" and sub == "list":
            return _list(
                args, "/v1/acl/tokens", _token_list_text, "Failed to retrieve the token list"
            )
        if command == "policy" and sub == "list":
            return _list(
                args, "/v1/acl/policies", _policy_stub, "Failed to retrieve the policy list"
            )
        if command == "policy" and sub == "read":
            return _policy_read(args)
        if command == "token" and sub == "delete":
            return _delete(args, "token", args.token_id)
        if command == "policy" and sub == "delete":
            return _delete(args, "policy", args.policy_id)
    except OSError as exc:
        err(f"Error reading rules: {exc}")
        return 1
    err(USAGE)
    return 1


def _failed(what: str, exc: APIError) -> int:
    err(f"{what}: {exc}")
    return 1


def _bootstrap(args: argparse.Namespace) -> int:
    try:
        resp = client_from_args(args).call("PUT", "/v1/acl/bootstrap")
        out(_token_text(_json(resp.body)))
    except APIError as exc:
        return _failed("Failed ACL bootstrapping", exc)
    return 0


def _policy_create(args: argparse.Namespace) -> int:
    if not args.name:
        err("Missing require '-name' flag")
        return 1
    body = {
        "Name": args.name,
        "Description": args.description,
        "Rules": _rules(args.rules),
        "Datacenters": args.datacenters,
    }
    try:
        resp = client_from_args(args).call("PUT", "/v1/acl/policy", body=json.dumps(body).encode())
        out(_policy_text(_json(resp.body)))
    except APIError as exc:
        return _failed("Failed to create new policy", exc)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    links = [{"ID": i} for i in args.policy_ids] + [{"Name": n} for n in args.policy_names]
    body = {"Description": args.description, "Policies": links, "Local": args.local}
    try:
        resp = client_from_args(args).call("PUT", "/v1/acl/token", body=json.dumps(body).encode())
        out(_token_text(_json(resp.body)))
    except APIError as exc:
        return _failed("Failed to create new token", exc)
    return 0


def _token_read(args: argparse.Namespace) -> int:
    if not args.self_ and not args.token_id:
        err("Must specify the -id parameter")
        return 1
    path = "/v1/acl/token/self" if args.self_ else f"/v1/acl/token/{args.token_id}"
    try:
        resp = client_from_args(args).call("GET", path)
        out(_token_text(_json(resp.body)))
    except APIError as exc:
        return _failed("Error reading token", exc)
    return 0


def _policy_stub(p: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{p.get('Name', '')}:",
            f"   ID:           {p.get('ID', '')}",
            f"   Description:  {p.get('Description', '')}",
            f"   Datacenters:  {', '.join(p.get('Datacenters') or [])}",
        ]
    )


def _list(args: argparse.Namespace, path: str, show: Any, what: str) -> int:
    try:
        items = client_from_args(args).get_json(path)
    except APIError as exc:
        return _failed(what, exc)
    if not isinstance(items, list):
        return _failed(what, APIError("unexpected reply from the agent"))
    out("\n\n".join(show(i) for i in items if isinstance(i, dict)))
    return 0


def _policy_read(args: argparse.Namespace) -> int:
    if not args.policy_id and not args.name:
        err("Must specify either the -id or -name parameters")
        return 1
    path = (
        f"/v1/acl/policy/{args.policy_id}" if args.policy_id else f"/v1/acl/policy/name/{args.name}"
    )
    try:
        resp = client_from_args(args).call("GET", path)
        out(_policy_text(_json(resp.body)))
    except APIError as exc:
        return _failed("Error reading policy", exc)
    return 0


def _delete(args: argparse.Namespace, kind: str, item_id: str) -> int:
    if not item_id:
        err("Must specify the -id parameter")
        return 1
    try:
        client_from_args(args).call("DELETE", f"/v1/acl/{kind}/{item_id}")
    except APIError as exc:
        return _failed(f"Error deleting {kind} {item_id!r}", exc)
    out(f"{kind.capitalize()} {item_id!r} deleted successfully")
    return 0


def _token_list_text(t: dict[str, Any]) -> str:
    return _token_text(t) + f"\nLegacy:           {'true' if t.get('Legacy') else 'false'}"


def _set_agent_token(args: argparse.Namespace) -> int:
    words = list(args.agent_token_args)
    if not words:
        err("Missing TYPE and TOKEN arguments")
        return 1
    if len(words) == 1:
        err("Missing TOKEN argument" if words[0] in AGENT_TOKEN_TYPES else "MISSING TYPE argument")
        return 1
    if len(words) > 2:
        err(f"Too many arguments: expected 2 got {len(words)}")
        return 1
    kind = words[0]
    try:
        secret = _rules(words[1]).strip()  # TOKEN may be @file or - (stdin), as Consul's
    except OSError as exc:
        err(f"Error! {exc}")
        return 1
    path = AGENT_TOKEN_TYPES.get(kind)
    if path is None:
        err("Unknown token type")
        return 1
    body = json.dumps({"Token": secret}).encode()
    try:
        client_from_args(args).call("PUT", f"/v1/agent/token/{path}", body=body)
    except APIError as exc:
        return _failed(f"Failed to set ACL token {json.dumps(kind)}", exc)
    out(f"ACL token {json.dumps(kind)} set successfully")
    return 0
