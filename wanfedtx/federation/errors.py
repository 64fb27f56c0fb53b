# -*- test-case-name: tests.unit.federation -*-
"""Exceptions of the federation package.

Request validation errors are :class:`wanfedtx.catalog.errors.BadRequestError` (HTTP 400), as
for every endpoint; these are the errors of the leader routines.
"""

from __future__ import annotations


class FederationError(Exception):
    """A federation-state routine failed; it retries with backoff."""


class OtherDatacenterError(FederationError):
    """Anti-entropy was asked to write another datacenter's state."""

    def __init__(self) -> None:
        super().__init__(
            "cannot use this mechanism to update federation states for other datacenters"
        )
