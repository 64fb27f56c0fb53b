# -*- test-case-name: tests.unit.gateway,tests.integration.gateway.test_gateway_cli -*-
"""Reading a gateway routes file (JSON or HCL) into a routing snapshot.

A routes file holds either the snapshot *inputs* (``inputs { ... }``: local DC, servers, gateways
per DC, ...; the snapshot is then built by :func:`~wanfedtx.gateway.snapshot.build_snapshot`) or an
explicit routing table (``clusters`` with their endpoints and ``filter_chains``, or the full
``/config_dump`` shape with ``endpoints`` and ``listeners``). docs/gateway.md shows both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl

from wanfedtx import jsondecode
from wanfedtx.gateway.errors import RoutesFileError, SnapshotInputError
from wanfedtx.gateway.snapshot import (
    BindInput,
    Snapshot,
    build_snapshot,
    inputs_from_json,
    snapshot_from_json,
)


def parse_routes_text(text: str, name: str = "<routes>") -> dict[str, Any]:
    """JSON when the text starts with ``{``, HCL (v1, as pyhcl reads it) otherwise."""
    try:
        data = jsondecode.loads(text) if text.lstrip().startswith("{") else hcl.loads(text)
    except Exception as e:  # pyhcl raises ValueError or its own lexer/parser errors
        raise RoutesFileError(f"{name}: cannot parse as JSON or HCL: {e}") from None
    if not isinstance(data, dict):
        raise RoutesFileError(f"{name}: the top level must be an object")
    return data


def routes_to_snapshot(data: dict[str, Any], address: str, port: int) -> Snapshot:
    """Build the snapshot a routes file describes; ``address:port`` is the default listener."""
    try:
        if "inputs" in data:
            inputs = dict(data["inputs"])
            if not inputs.get("binds"):
                inputs["binds"] = [{"name": "default", "address": address, "port": port}]
            return build_snapshot(inputs_from_json(inputs))
        explicit: dict[str, Any] = {
            "clusters": [],
            "endpoints": list(data.get("endpoints", [])),
            "listeners": list(data.get("listeners", [])),
        }
        for c in data.get("clusters", []):
            explicit["clusters"].append({k: v for k, v in c.items() if k != "endpoints"})
            if "endpoints" in c:
                explicit["endpoints"].append(
                    {"cluster_name": c.get("name"), "endpoints": c["endpoints"]}
                )
        if "filter_chains" in data:
            explicit["listeners"].append(
                {
                    "name": f"default:{address}:{port}",
                    "address": address,
                    "port": port,
                    "filter_chains": data["filter_chains"],
                }
            )
        if not explicit["listeners"]:
            raise RoutesFileError(
                "routes file has neither `inputs` nor `filter_chains`/`listeners`; "
                "see docs/gateway.md for the format"
            )
        return snapshot_from_json(explicit)
    except SnapshotInputError as e:
        raise RoutesFileError(str(e)) from None
    except (TypeError, AttributeError, ValueError) as e:
        raise RoutesFileError(f"routes file has an unexpected shape: {e}") from None


def load_routes(path: str | Path, address: str, port: int) -> Snapshot:
    """Read and build; every failure is a RoutesFileError naming the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise RoutesFileError(f"cannot read routes file {p}: {e.strerror}") from None
    try:
        return routes_to_snapshot(parse_routes_text(text, str(p)), address, port)
    except RoutesFileError as e:
        msg = str(e)
        raise RoutesFileError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None


def listener_index(snapshot: Snapshot, address: str, port: int) -> int:
    """The listener of the snapshot bound at ``address:port``, else the first one."""
    for i, li in enumerate(snapshot.listeners):
        if li.address == address and li.port == port:
            return i
    return 0


__all__ = ["BindInput", "listener_index", "load_routes", "parse_routes_text", "routes_to_snapshot"]
