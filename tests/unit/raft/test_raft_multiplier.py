"""``RaftOptions.for_multiplier`` (Consul's ``performance.raft_multiplier``) and a lone voter's
first election at the next tick rather than after an election timeout."""

from __future__ import annotations

import random

import pytest

from wanfedtx.raft.core import LEADER, RaftCore, RaftOptions, RestoredState


def _drain(core: RaftCore) -> None:
    while True:
        r = core.take_ready()
        if r.empty():
            return
        if r.seq:
            core.persisted(r.seq)


@pytest.mark.parametrize("mult", [1, 5, 10])
def test_multiplier_scales_election_and_heartbeat(mult: int) -> None:
    opts = RaftOptions.for_multiplier(mult, max_inflight=4)
    assert opts.election_timeout == pytest.approx(1.0 * mult)
    assert opts.heartbeat_interval == pytest.approx(0.1 * mult)
    assert opts.max_inflight == 4


def test_multiplier_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        RaftOptions.for_multiplier(0)


def test_lone_voter_campaigns_at_the_next_tick() -> None:
    core = RaftCore("s1", RaftOptions.for_multiplier(5), random.Random(1), 100.0)
    core.bootstrap(frozenset({"s1"}))
    _drain(core)
    assert core.next_deadline() == pytest.approx(100.0)  # not 105-110 s
    core.tick(100.0)
    _drain(core)
    assert core.role == LEADER


def test_lone_voter_restarted_campaigns_at_once_but_a_member_of_three_waits() -> None:
    alone = RaftCore("s1", RaftOptions.for_multiplier(5), random.Random(1), 0.0)
    alone.bootstrap(frozenset({"s1"}))
    _drain(alone)
    restored = RestoredState(alone.term, alone.vote, None, tuple(alone.log))
    again = RaftCore("s1", RaftOptions.for_multiplier(5), random.Random(2), 50.0, restored)
    assert again.next_deadline() == pytest.approx(50.0)

    three = RaftCore("s1", RaftOptions.for_multiplier(5), random.Random(3), 0.0)
    three.bootstrap(frozenset({"s1", "s2", "s3"}))
    _drain(three)
    assert 5.0 <= three.next_deadline() < 10.0
