# -*- test-case-name: tests.unit.cli.test_cli_http_verbs -*-
"""``wanfed kv get|put|delete|export|import``: the key/value store, as ``consul kv``.

Same flags, output and messages as Consul: ``get`` prints the raw value (``-detailed``: the
entry's fields; ``-recurse``: ``key:value`` lines; ``-keys``: one key per line, up to
``-separator``), a missing key is ``Error! No key exists at: <key>`` (exit 1); ``put`` takes the
value as an argument, ``@file`` or ``-`` (stdin), with ``-cas -modify-index=N`` and ``-flags``;
``export`` prints tab-indented JSON with base64 values and ``import`` reads it back.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import Any

from wanfedtx import jsondecode
from wanfedtx.cli.httpapi import (
    APIError,
    Client,
    UnexpectedResponse,
    add_client_flags,
    client_or_none,
    err,
    out,
    tabwrite,
)

HELP = "Interact with the key-value store (get, put, delete, export, import)"

KV_PATH = "/v1/kv/"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kv_command", metavar="SUBCOMMAND")
    p = sub.add_parser("get", help="Retrieve or list data")
    add_client_flags(p, server=True)
    p.add_argument("-base64", dest="base64", action="store_true",
                   help="Base64 encode the value")
    p.add_argument("-detailed", action="store_true", help="Show the entry's fields")
    p.add_argument("-keys", action="store_true", help="List keys under the prefix")
    p.add_argument("-recurse", action="store_true", help="Every entry under the prefix")
    p.add_argument("-separator", default="/", help="Stop listing keys at this string (-keys)")
    p.add_argument("args", nargs="*", metavar="KEY")

    p = sub.add_parser("put", help="Set or update data")
    add_client_flags(p, server=True)
    p.add_argument("-base64", dest="base64", action="store_true",
                   help="The data is base64 encoded")
    p.add_argument("-cas", action="store_true", help="Check-and-set with -modify-index")
    p.add_argument("-modify-index", dest="modify_index", type=int, default=0,
                   help="The entry's ModifyIndex for -cas (0: only if absent)")
    p.add_argument("-flags", type=int, default=0, help="Unsigned integer stored with the entry")
    p.add_argument("-acquire", action="store_true", help="Acquire a lock (needs sessions)")
    p.add_argument("-release", action="store_true", help="Release a lock (needs sessions)")
    p.add_argument("-session", default="", help="Session for -acquire and -release")
    p.add_argument("args", nargs="*", metavar="KEY [DATA|@file|-]")

    p = sub.add_parser("delete", help="Remove data")
    add_client_flags(p, server=True)
    p.add_argument("-cas", action="store_true", help="Check-and-set with -modify-index")
    p.add_argument("-modify-index", dest="modify_index", type=int, default=0,
                   help="The entry's ModifyIndex for -cas")
    p.add_argument("-recurse", action="store_true", help="Delete every key under the prefix")
    p.add_argument("args", nargs="*", metavar="KEY")

    p = sub.add_parser("export", help="Export entries as JSON (base64 values)")
    add_client_flags(p, server=True)
    p.add_argument("args", nargs="*", metavar="PREFIX")

    p = sub.add_parser("import", help="Import JSON made by export")
    add_client_flags(p, server=True)
    p.add_argument("args", nargs="*", metavar="DATA|@file|-")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "kv_command", None)
    if command is None:
        err("Usage: wanfed kv <subcommand> [options] [args]\n\n"
            "Subcommands: get, put, delete, export, import")
        return 1
    client = client_or_none(args)
    if client is None:
        return 1
    handler = {"get": get, "put": put, "delete": delete, "export": export,
               "import": import_}[command]
    return handler(client, args)


def _key(args: list[str], optional: bool) -> str | None:
    """The KEY argument without its leading ``/``; None after printing an error."""
    if len(args) > 1:
        err(f"Too many arguments (expected 1, got {len(args)})")
        return None
    key = args[0] if args else ""
    if not key and not optional:
        err("Error! Missing KEY argument")
        return None
    return key.lstrip("/") if key.startswith("/") else key


def _value(entry: dict[str, Any]) -> bytes:
    raw = entry.get("Value")
    return base64.b64decode(raw) if raw else b""


def pretty(entry: dict[str, Any], b64: bool) -> str:
    """Consul's ``-detailed`` block for one entry."""
    value = _value(entry)
    shown = base64.b64encode(value).decode() if b64 else value.decode("utf-8", "replace")
    rows = [
        ["CreateIndex", str(entry.get("CreateIndex", 0))],
        ["Flags", str(entry.get("Flags", 0))],
        ["Key", str(entry.get("Key", ""))],
        ["LockIndex", str(entry.get("LockIndex", 0))],
        ["ModifyIndex", str(entry.get("ModifyIndex", 0))],
        ["Session", str(entry.get("Session") or "-")],
        ["Value", shown],
    ]
    return tabwrite(rows)


def _list(client: Client, query: list[tuple[str, str | None]], key: str) -> Any:
    """GET ``/v1/kv/<key>``: the decoded JSON, or None on 404 (no such key)."""
    resp = client.send("GET", KV_PATH + key, query)
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise UnexpectedResponse(resp.status, resp.body)
    try:
        return jsondecode.loads(resp.body)
    except ValueError as exc:
        raise APIError(f"invalid JSON from the agent: {exc}") from None


def get(client: Client, args: argparse.Namespace) -> int:
    key = _key(args.args, optional=args.recurse or args.keys)
    if key is None:
        return 1
    try:
        if args.keys:
            keys = _list(client, [("keys", None), ("separator", args.separator)], key) or []
            for k in keys:
                out(str(k))
            return 0
        if args.recurse:
            entries = _list(client, [("recurse", None)], key) or []
            for i, entry in enumerate(entries):
                if args.detailed:
                    out(pretty(entry, args.base64))
                    if i < len(entries) - 1:
                        out("")
                    continue
                value = _value(entry)
                shown = base64.b64encode(value).decode() if args.base64 else value.decode(
                    "utf-8", "replace")
                out(f"{entry.get('Key', '')}:{shown}")
            return 0
        entries = _list(client, [], key)
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1
    if not entries:
        err(f"Error! No key exists at: {key}")
        return 1
    entry = entries[0]
    if args.detailed:
        out(pretty(entry, args.base64))
    elif args.base64:
        out(base64.b64encode(_value(entry)).decode())
    else:
        out(_value(entry))
    return 0


def read_data(data: str, what: str = "data") -> bytes:
    """``@file`` (the file), ``-`` (stdin) or the argument itself; ValueError with Consul's
    message when a file or stdin cannot be read."""
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise ValueError(f"Failed to read file: {exc}") from None
    if data == "-":
        try:
            return sys.stdin.buffer.read()
        except OSError as exc:
            raise ValueError(f"Failed to read stdin: {exc}") from None
    return data.encode()


def put(client: Client, args: argparse.Namespace) -> int:
    rest: list[str] = args.args
    if not rest:
        err("Error! Missing KEY argument")
        return 1
    if len(rest) > 2:
        err(f"Error! Too many arguments (expected 1 or 2, got {len(rest)})")
        return 1
    key = rest[0].lstrip("/")
    try:
        value = read_data(rest[1]) if len(rest) == 2 else b""
    except ValueError as exc:
        err(f"Error! {exc}")
        return 1
    if args.base64:
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            err(f"Error! Cannot base 64 decode data: {exc}")
            return 1
    if (args.acquire or args.release) and not args.session:
        err("Error! Missing -session (required with -acquire and -release)")
        return 1
    if args.cas and args.modify_index == 0:
        err("Must specify -modify-index with -cas!")
        return 1
    query: list[tuple[str, str | None]] = []
    if args.flags:
        query.append(("flags", str(args.flags)))
    if args.cas:
        query.append(("cas", str(args.modify_index)))
    elif args.acquire or args.release:
        query.append(("acquire" if args.acquire else "release", args.session))
    try:
        resp = client.call("PUT", KV_PATH + key, query, value)
    except APIError as exc:
        if args.cas:
            err(f"Error! Did not write to {key}: {exc}")
        else:
            err(f"Error! Failed writing data: {exc}")
        return 1
    ok = resp.body.strip() == b"true"
    if args.cas and not ok:
        err(f"Error! Did not write to {key}: CAS failed")
        return 1
    if args.acquire or args.release:
        if not ok:
            err("Error! Did not acquire lock" if args.acquire else "Error! Did not release lock")
            return 1
        out(f"Success! Lock {'acquired' if args.acquire else 'released'} on: {key}")
        return 0
    out(f"Success! Data written to: {key}")
    return 0


def delete(client: Client, args: argparse.Namespace) -> int:
    if args.cas and args.modify_index == 0:
        err("Must specify -modify-index with -cas!")
        return 1
    if args.modify_index and not args.cas:
        err("Cannot specify -modify-index without -cas!")
        return 1
    if args.cas and args.recurse:
        err("Cannot specify both -cas and -recurse!")
        return 1
    key = _key(args.args, optional=args.recurse)
    if key is None:
        return 1
    try:
        if args.recurse:
            client.call("DELETE", KV_PATH + key, [("recurse", None)])
            out(f"Success! Deleted keys with prefix: {key}")
            return 0
        if args.cas:
            resp = client.call("DELETE", KV_PATH + key, [("cas", str(args.modify_index))])
            if resp.body.strip() != b"true":
                err(f"Error! Did not delete key {key}: CAS failed")
                return 1
        else:
            client.call("DELETE", KV_PATH + key)
    except APIError as exc:
        if args.recurse:
            err(f"Error! Did not delete prefix {key}: {exc}")
        elif args.cas:
            err(f"Error! Did not delete key {key}: {exc}")
        else:
            err(f"Error deleting key {key}: {exc}")
        return 1
    out(f"Success! Deleted key: {key}")
    return 0


def export_entries(entries: list[dict[str, Any]]) -> str:
    """Consul's export JSON: a tab-indented list of ``{"key", "flags", "value"}``."""
    exported = [
        {"key": e.get("Key", ""), "flags": int(e.get("Flags") or 0), "value": e.get("Value") or ""}
        for e in entries
    ]
    return json.dumps(exported, indent="\t")


def export(client: Client, args: argparse.Namespace) -> int:
    if len(args.args) > 1:
        err(f"Too many arguments (expected 1, got {len(args.args)})")
        return 1
    prefix = args.args[0].lstrip("/") if args.args else ""
    try:
        entries = _list(client, [("recurse", None)], prefix) or []
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1
    out(export_entries(entries))
    return 0


def import_(client: Client, args: argparse.Namespace) -> int:
    if not args.args:
        err("Error! Missing DATA argument")
        return 1
    if len(args.args) > 1:
        err(f"Too many arguments (expected 1, got {len(args.args)})")
        return 1
    try:
        data = read_data(args.args[0])
    except ValueError as exc:
        err(f"Error! {exc}")
        return 1
    try:
        entries = jsondecode.loads(data)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("want a JSON list of {\"key\", \"flags\", \"value\"} objects")
    except ValueError as exc:
        err(f"Cannot unmarshal data: {exc}")
        return 1
    for entry in entries:
        key = str(entry.get("key", ""))
        try:
            value = base64.b64decode(str(entry.get("value") or ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            err(f"Error base 64 decoding value for key {key}: {exc}")
            return 1
        try:
            flags = int(entry.get("flags") or 0)
            query: list[tuple[str, str | None]] = [("flags", str(flags))] if flags else []
            client.call("PUT", KV_PATH + key, query, value)
        except (APIError, ValueError, TypeError) as exc:
            err(f"Error! Failed writing data for key {key}: {exc}")
            return 1
        out(f"Imported: {key}")
    return 0
