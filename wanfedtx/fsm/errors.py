# -*- test-case-name: tests.unit.fsm.test_fsm_machine -*-
"""Exceptions of the FSM package."""

from __future__ import annotations


class FSMError(Exception):
    """A command could not be decoded or applied."""


class UnknownCommandError(FSMError):
    """A command type this FSM does not know (and that does not carry the ignore flag)."""


class CommandDecodeError(FSMError):
    """A command's msgpack body is not what its type requires."""


class LeadershipError(Exception):
    """The consensus layer's answer when this server is not (or stopped being) the leader while
    an operation needed it: the new leader does the work, so callers treat it as routine, not as
    a failure. Raft's ``NotLeaderError`` and ``LeadershipLostError`` are of this kind."""
