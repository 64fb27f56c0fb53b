# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_core -*-
"""Exceptions of the raft package; messages say what was wrong and what to do."""

from __future__ import annotations

from wanfedtx.fsm.errors import LeadershipError


class RaftError(Exception):
    """Base class of every raft error."""


class MessageDecodeError(RaftError):
    """Bytes that are not a valid raft message (bad msgpack, unknown type, wrong field types)."""


class NotLeaderError(RaftError, LeadershipError):
    """The operation needs the leader; ``leader`` names the known leader (or None)."""

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class LeadershipLostError(RaftError, LeadershipError):
    """Leadership was lost before the operation completed; its outcome is unknown."""


class ConfigChangeError(RaftError):
    """A membership change that cannot be made now (one is already in progress, bad peer...)."""


class LeadershipTransferError(RaftError):
    """A leadership transfer is in progress or could not be started."""


class StorageError(RaftError):
    """The data directory cannot be used (corruption in the middle of a log, bad snapshot...)."""


class BootstrapError(RaftError):
    """The cluster cannot be bootstrapped (already has state, empty voter set...)."""


class EntryTooLargeError(RaftError):
    """A command over the maximum raft entry size; the write must be split into smaller ones."""


class RaftInvariantError(RaftError):
    """An internal raft invariant would be broken (a bug, or a peer breaking the protocol)."""
