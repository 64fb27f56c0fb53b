"""Exceptions of the gateway package; messages say what was wrong and what to do."""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every gateway error."""


class RoutesFileError(GatewayError):
    """A routes file that cannot be read or does not describe a valid routing table."""


class SnapshotInputError(GatewayError):
    """Snapshot inputs that cannot produce a routing snapshot."""
