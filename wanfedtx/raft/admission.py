# -*- test-case-name: tests.unit.raft -*-
"""Which raft messages a server may process: the sender must be placed in its configuration.

``refusal(core, msg)`` is called by ``RaftCore.receive`` before anything else; a message it
refuses changes nothing and is reported as a ``ProtocolViolation`` (see docs/raft.md, "Raft
safety and bounds").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wanfedtx.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
)
from wanfedtx.raft.state import (
    LEADER,
    V_MALFORMED,
    V_MATCH,
    V_NOT_MEMBER,
    V_NOT_VOTER,
    V_TERM,
    V_TRUNCATE,
)

if TYPE_CHECKING:
    from wanfedtx.raft.core import RaftCore


def ever_member(core: RaftCore) -> bool:
    """Whether this server is in any configuration it holds (log or snapshot). A server that
    is in none is being added (or was never bootstrapped): it must follow the leader that
    replicates the history to it, whose own addition may come later in that history."""
    return any(core.id in v for _, v in core._configs)


def refusal(core: RaftCore, msg: Message) -> tuple[str, str] | None:
    """(reason, detail) if ``msg`` may not be processed, None if it may."""
    src, kind = msg.src, type(msg).__name__
    voters = core.voters
    if src == core.id:
        return V_NOT_MEMBER, f"{kind} claims to come from this server's own id"
    if isinstance(msg, AppendEntries | InstallSnapshot):
        vouched = core._vouched
        if (src not in voters and ever_member(core)
                and not (vouched and vouched[0] == src and msg.term >= vouched[1])):
            if msg.term >= core.term:
                core._stray_at = core.now
            return V_NOT_MEMBER, f"{kind} (term {msg.term}) from a server outside the " \
                f"configuration {sorted(voters)}"
        if isinstance(msg, AppendEntries) and msg.term >= core.term:
            return _append_refusal(core, msg)
        return None
    if isinstance(msg, RequestVote):
        if src not in voters:
            return V_NOT_VOTER, f"RequestVote (term {msg.term}) from a server that is not " \
                "a voter"
        return None
    if src not in voters and (msg.term > core.term or isinstance(msg, TimeoutNow)):
        return V_TERM, f"{kind} with term {msg.term} (ours {core.term}) from a server " \
            "outside the configuration"
    if (isinstance(msg, AppendEntriesResponse) and msg.success and core.role == LEADER
            and msg.term == core.term and msg.match_index > core.last_index()):
        return V_MATCH, f"acknowledges index {msg.match_index} beyond our last index " \
            f"{core.last_index()}"
    return None


def _append_refusal(core: RaftCore, m: AppendEntries) -> tuple[str, str] | None:
    """Malformed batches, and batches that conflict with a committed entry (Log Matching
    says a leader never asks that; only a forger or a broken peer does)."""
    if m.prev_term > m.term:
        return V_MALFORMED, f"prev_term {m.prev_term} above the message term {m.term}"
    last_term = m.prev_term
    for i, e in enumerate(m.entries):
        if e.index != m.prev_index + 1 + i or e.term > m.term or e.term < last_term:
            return V_MALFORMED, f"entry {i} (index {e.index}, term {e.term}) does not " \
                f"follow index {m.prev_index} / term {m.prev_term} in term {m.term}"
        last_term = e.term
    if m.prev_index > core.snap_index and core.term_at(m.prev_index) != m.prev_term:
        return None  # refused by a failure reply; nothing changes
    for e in m.entries:
        t = core.term_at(e.index)
        if t is None or t == e.term:
            continue
        if e.index <= core.commit:
            return V_TRUNCATE, f"entry {e.index} (term {e.term}) conflicts with our " \
                f"committed entry of term {t} (commit index {core.commit})"
        break
    return None
