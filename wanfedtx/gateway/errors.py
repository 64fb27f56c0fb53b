# -*- test-case-name: tests.unit.gateway -*-
"""Exceptions of the gateway package; messages say what was wrong and what to do."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class GatewayError(Exception):
    """Base class of every gateway error."""


class RoutesFileError(GatewayError):
    """A routes file that cannot be read or does not describe a valid routing table."""


class GatewayListenError(GatewayError):
    """A listener of the gateway (relay or admin API) could not bind its address."""

    def __init__(self, address: tuple[str, int], reason: str, what: str = "gateway") -> None:
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"{what}: cannot listen on {shown}: {reason}")
        self.address = address


class SnapshotInputError(GatewayError):
    """Snapshot inputs that cannot produce a routing snapshot."""


class RelayStateError(GatewayError):
    """A relayed connection in a state its invariants exclude: a bug, never a peer's input."""


def need(value: T | None, what: str) -> T:
    """``value``, or ``RelayStateError`` naming ``what`` if it is not set (no ``assert``)."""
    if value is None:
        raise RelayStateError(f"gateway relay: {what} is not set in this connection state")
    return value
