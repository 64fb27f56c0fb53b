# -*- test-case-name: tests.unit.cli.test_cli_snapshot -*-
"""``wanfed snapshot save|restore|inspect FILE``: back up and restore a datacenter's servers, as
``consul snapshot``.

``save`` reads ``GET /v1/snapshot`` (``-stale``: any server answers; ``-datacenter``: another
datacenter, through the gateways), writes ``FILE.unverified``, checks the archive's checksums,
renames it to ``FILE`` and prints ``Saved and verified snapshot to index <N>``. ``restore``
sends the file with ``PUT /v1/snapshot`` and prints ``Restored snapshot``. ``inspect`` checks a
file locally and prints its ID, Size, Index, Term and Version.
"""

from __future__ import annotations

import argparse
import os

from wanfedtx.cli.httpapi import APIError, add_client_flags, client_or_none, err, out
from wanfedtx.snapshot.archive import ArchiveError, format_inspect, read_archive

HELP = "Saves, restores and inspects snapshots of the servers' state (save|restore|inspect)"
USAGE = "Usage: wanfed snapshot <save|restore|inspect> [options] FILE"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND")
    p = sub.add_parser("save", help="Saves a snapshot of the servers' state to FILE")
    add_client_flags(p, server=True)
    p.add_argument("files", nargs="*", metavar="FILE")
    p = sub.add_parser("restore", help="Restores the servers' state from the snapshot in FILE")
    add_client_flags(p, server=True)
    p.add_argument("files", nargs="*", metavar="FILE")
    p = sub.add_parser("inspect", help="Checks the snapshot in FILE and shows its metadata")
    p.add_argument("files", nargs="*", metavar="FILE")


def _file(args: argparse.Namespace) -> str | None:
    files: list[str] = args.files
    if not files:
        err("Missing FILE argument")
        return None
    if len(files) > 1:
        err(f"Too many arguments (expected 1, got {len(files)})")
        return None
    return files[0]


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "snapshot_command", None)
    if command is None:
        err(USAGE)
        return 1
    path = _file(args)
    if path is None:
        return 1
    if command == "save":
        return save(args, path)
    if command == "restore":
        return restore(args, path)
    return inspect(path)


def save(args: argparse.Namespace, path: str) -> int:
    client = client_or_none(args, "Error initializing client: ")
    if client is None:
        return 1
    try:
        resp = client.call("GET", "/v1/snapshot")
    except APIError as exc:
        err(f"Error saving snapshot: {exc}")
        return 1
    unverified = path + ".unverified"
    try:
        with open(unverified, "wb") as f:
            f.write(resp.body)
    except OSError as exc:
        err(f"Error creating snapshot file: {exc}")
        return 1
    try:
        read_archive(resp.body)
    except ArchiveError as exc:
        err(f"Error verifying snapshot file: {exc}")
        return 1
    try:
        os.replace(unverified, path)
    except OSError as exc:
        err(f"Error renaming {unverified!r} to {path!r}: {exc}")
        return 1
    index = resp.headers.get("X-Consul-Index") or resp.headers.get("x-consul-index") or "0"
    out(f"Saved and verified snapshot to index {index}")
    return 0


def restore(args: argparse.Namespace, path: str) -> int:
    client = client_or_none(args, "Error initializing client: ")
    if client is None:
        return 1
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {exc}")
        return 1
    try:
        client.call("PUT", "/v1/snapshot", body=data)
    except APIError as exc:
        err(f"Error restoring snapshot: {exc}")
        return 1
    out("Restored snapshot")
    return 0


def inspect(path: str) -> int:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {exc}")
        return 1
    try:
        meta, _ = read_archive(data)
    except ArchiveError as exc:
        err(f"Error verifying snapshot: {exc}")
        return 1
    out(format_inspect(meta).rstrip("\n"))
    return 0
