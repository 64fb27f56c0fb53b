# -*- test-case-name: tests.unit.state.test_state_store -*-
"""Exceptions raised by the state store.

Messages follow the reference's wording where it has one, so they can be shown to API users as-is.
"""

from __future__ import annotations


class StateError(Exception):
    """A write the state store refused; nothing was changed."""


class MissingNodeError(StateError):
    """A service or check names a node that is not registered."""


class MissingServiceError(StateError):
    """A check names a service that is not registered on its node."""


class InvalidMetadataError(StateError):
    """Node or service metadata broke the metadata rules (reserved prefix, sizes, characters).

    ``problem`` is the rule broken, without the pair (the whole message when not about a pair).
    """

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message


class SnapshotFormatError(StateError):
    """A snapshot stream could not be decoded; the store was not replaced."""


class MissingDatacenterError(StateError):
    """A federation state without a datacenter name."""

    def __init__(self) -> None:
        super().__init__("missing datacenter on federation state")
