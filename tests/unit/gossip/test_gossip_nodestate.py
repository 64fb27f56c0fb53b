"""The pure alive/suspect/dead/refute transitions (memberlist.nodestate), tested by the effects
they emit for a message log, and by hypothesis over random message sequences."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.gossip import wire
from wanfedtx.gossip.memberlist.nodestate import (
    Broadcast,
    CancelSuspicion,
    ConfirmSuspicion,
    Effect,
    Local,
    LocalAlive,
    Log,
    MemberView,
    Message,
    NotifyJoin,
    NotifyLeave,
    NotifyUpdate,
    Refuted,
    StartSuspicion,
    SuspicionExpired,
    SuspicionView,
    before_update,
    transition,
)
from wanfedtx.gossip.wire import NodeStateType

VSN = wire.make_vsn()
A1 = b"\x7f\x00\x00\x01"
A2 = b"\x7f\x00\x00\x02"


class Cluster:
    """A member table driven only by ``transition``; the suspicion timers become views."""

    def __init__(self, name: str = "me", k: int = 2) -> None:
        self.local = Local(name, 0, VSN)
        self.k = k
        self.members: dict[str, MemberView] = {}
        self.suspicions: dict[str, SuspicionView] = {}
        self.started: dict[str, float] = {}
        self.log: list[Effect] = []

    def feed(self, msg: Message, now: float) -> tuple[Effect, ...]:
        if isinstance(msg, LocalAlive):
            name = msg.alive.node
        else:
            name = msg.node
        if isinstance(msg, SuspicionExpired):
            self.suspicions.pop(name, None)
        step = transition(self.members.get(name), self.suspicions.get(name), self.local, msg, now)
        self.local = attrs.evolve(self.local, incarnation=step.incarnation)
        if step.member is not None:
            self.members[name] = step.member
        for e in step.effects:
            if isinstance(e, StartSuspicion):
                self.suspicions[e.node] = SuspicionView(self.k, frozenset({e.from_}))
                self.started[e.node] = e.started_at
            elif isinstance(e, ConfirmSuspicion):
                s = self.suspicions[e.node]
                self.suspicions[e.node] = attrs.evolve(s, confirmations=s.confirmations | {e.from_})
            elif isinstance(e, CancelSuspicion):
                del self.suspicions[e.node]
        self.log.extend(step.effects)
        return step.effects

    def boot(self, now: float = 0.0) -> None:
        inc = self.local.incarnation + 1
        self.local = attrs.evolve(self.local, incarnation=inc)
        self.feed(LocalAlive(wire.Alive(inc, self.local.name, A1, 7946, b"", VSN)), now)


def alive(node: str, inc: int, addr: bytes = A1, meta: bytes = b"") -> wire.Alive:
    return wire.Alive(inc, node, addr, 7946, meta, VSN)


def kinds(effects: tuple[Effect, ...]) -> list[str]:
    return [type(e).__name__ for e in effects]


# -- event logs


def test_new_member_joins_and_is_gossiped() -> None:
    c = Cluster()
    a = alive("a", 1)
    effects = c.feed(a, 1.0)
    assert effects[0] == Broadcast("a", a)
    assert kinds(effects) == ["Broadcast", "NotifyJoin"]
    m = c.members["a"]
    assert (m.state, m.incarnation, m.state_change) == (NodeStateType.ALIVE, 1, 1.0)
    assert c.feed(alive("a", 1), 2.0) == ()  # same incarnation: old news


def test_unknown_member_with_incarnation_zero_is_recorded_dead_silently() -> None:
    c = Cluster()
    assert c.feed(alive("a", 0), 1.0) == ()
    assert c.members["a"].state == NodeStateType.DEAD  # memberlist 0.2.2 does the same


def test_meta_change_is_an_update_not_a_join() -> None:
    c = Cluster()
    c.feed(alive("a", 1), 1.0)
    effects = c.feed(alive("a", 2, meta=b"v2"), 2.0)
    assert kinds(effects) == ["Broadcast", "NotifyUpdate"]
    assert isinstance(effects[1], NotifyUpdate) and effects[1].member.meta == b"v2"
    assert c.members["a"].state_change == 1.0  # still alive since 1.0


def test_suspect_then_confirmations_then_refuted_by_a_newer_alive() -> None:
    c = Cluster(k=1)
    c.feed(alive("a", 1), 1.0)
    s = wire.Suspect(1, "a", "b")
    assert c.feed(s, 2.0) == (Broadcast("a", s), StartSuspicion("a", "b", 2.0))
    assert c.members["a"].state is NodeStateType.SUSPECT
    assert c.feed(wire.Suspect(1, "a", "b"), 2.5) == ()  # same accuser: no confirmation
    s2 = wire.Suspect(1, "a", "c")
    assert c.feed(s2, 3.0) == (ConfirmSuspicion("a", "c"), Broadcast("a", s2))
    assert c.feed(wire.Suspect(1, "a", "d"), 3.5) == ()  # k=1 reached
    a2 = alive("a", 2)
    effects = c.feed(a2, 4.0)
    assert kinds(effects) == ["CancelSuspicion", "Broadcast"]
    refuted = c.members["a"]
    assert refuted.state is NodeStateType.ALIVE
    assert "a" not in c.suspicions


def test_suspicion_expiry_marks_dead_and_a_stale_expiry_does_nothing() -> None:
    c = Cluster()
    c.feed(alive("a", 1), 1.0)
    c.feed(wire.Suspect(1, "a", "b"), 2.0)
    assert c.feed(SuspicionExpired("a", 1.5, 0), 9.0) == ()  # another suspicion's timer
    effects = c.feed(SuspicionExpired("a", 2.0, 1), 9.0)
    assert kinds(effects) == ["Log", "Broadcast", "NotifyLeave"]
    assert effects[1] == Broadcast("a", wire.Dead(1, "a", "me"))
    assert c.members["a"].state == NodeStateType.DEAD


def test_dead_from_itself_is_left_from_others_is_dead() -> None:
    c = Cluster()
    c.feed(alive("a", 1), 1.0)
    c.feed(alive("b", 1), 1.0)
    c.feed(wire.Dead(1, "a", "a"), 2.0)
    c.feed(wire.Dead(1, "b", "x"), 2.0)
    assert c.members["a"].state == NodeStateType.LEFT
    assert c.members["b"].state == NodeStateType.DEAD
    assert c.feed(wire.Dead(1, "a", "a"), 3.0) == ()  # already left


def test_accusations_about_us_are_refuted_with_a_higher_incarnation() -> None:
    c = Cluster()
    c.boot()
    effects = c.feed(wire.Suspect(5, "me", "b"), 1.0)
    assert effects[0] == Refuted(6)
    assert effects[1] == Broadcast("me", wire.Alive(6, "me", A1, 7946, b"", VSN))
    assert isinstance(effects[2], Log) and effects[2].level == "warn"
    assert c.members["me"].state == NodeStateType.ALIVE and c.local.incarnation == 6
    assert kinds(c.feed(wire.Dead(6, "me", "b"), 2.0)) == ["Refuted", "Broadcast", "Log"]
    assert kinds(c.feed(alive("me", 7, meta=b"x"), 3.0)) == ["Refuted", "Broadcast", "Log"]
    assert c.local.incarnation == 8


def test_our_own_dead_while_leaving_is_gossiped_as_left() -> None:
    c = Cluster()
    c.boot()
    c.local = attrs.evolve(c.local, leaving=True)
    d = wire.Dead(1, "me", "me")
    effects = c.feed(d, 1.0)
    assert kinds(effects) == ["Broadcast", "NotifyLeave"]
    assert c.members["me"].state == NodeStateType.LEFT
    assert c.feed(alive("me", 9), 2.0) == ()  # leaving: our alives are ignored


def test_conflicting_address_is_logged_and_ignored_unless_left() -> None:
    c = Cluster()
    c.feed(alive("a", 1), 1.0)
    effects = c.feed(alive("a", 2, addr=A2), 2.0)
    assert kinds(effects) == ["Log"] and isinstance(effects[0], Log)
    assert effects[0].level == "error" and c.members["a"].addr == A1
    c.feed(wire.Dead(2, "a", "a"), 3.0)
    # A left node restarting elsewhere comes back even with a lower incarnation (memberlist).
    effects = c.feed(alive("a", 1, addr=A2), 4.0)
    assert kinds(effects) == ["Log", "Broadcast", "NotifyJoin"]
    assert (c.members["a"].addr, c.members["a"].incarnation) == (A2, 1)


def test_effects_before_the_update_come_first() -> None:
    c = Cluster()
    c.feed(alive("a", 1), 1.0)
    c.feed(wire.Suspect(1, "a", "b"), 2.0)
    for e in c.feed(alive("a", 3, meta=b"m"), 3.0):
        assert before_update(e) == (not isinstance(e, NotifyJoin | NotifyUpdate | NotifyLeave))


# -- hypothesis: random message sequences

NAMES = ("me", "a", "b")
incs = st.integers(min_value=0, max_value=3)
names = st.sampled_from(NAMES)


def messages(addrs: tuple[bytes, ...]) -> st.SearchStrategy[object]:
    alives = st.builds(
        lambda n, i, a, m: wire.Alive(i, n, a, 7946, m, VSN),
        names,
        incs,
        st.sampled_from(addrs),
        st.sampled_from((b"", b"m")),
    )
    return st.one_of(
        alives,
        alives,
        st.builds(wire.Suspect, incs, names, names),
        st.builds(wire.Dead, incs, names, names),
        st.builds(lambda i, n: wire.Dead(i, n, n), incs, names),
        st.builds(lambda n: ("expire", n), names),
        st.just(("boot", "me")),
        st.just(("leave", "me")),
    )


def run(seq: list[object], same_address: bool) -> None:
    c = Cluster(k=1)
    c.boot()
    now = 1.0
    for raw in seq:
        now += 1.0
        if isinstance(raw, tuple):
            what, name = raw
            if what == "boot":
                if not c.local.leaving:
                    c.boot(now)
                continue
            if what == "leave":
                c.local = attrs.evolve(c.local, leaving=True)
                me = c.members["me"]
                msg: Message = wire.Dead(me.incarnation, "me", "me")
            else:
                if name not in c.suspicions:
                    continue
                msg = SuspicionExpired(name, c.started[name], 0)
        else:
            msg = raw  # type: ignore[assignment]
        name = msg.node  # type: ignore[union-attr]
        old = c.members.get(name)
        had_suspicion = name in c.suspicions
        effects = c.feed(msg, now)
        new = c.members.get(name)
        if old is None or new is None:
            continue
        moved = new.addr != old.addr
        if same_address or not moved:
            # An incarnation never goes backwards.
            assert new.incarnation >= old.incarnation, (old, msg, new)
        else:
            # memberlist's one exception: a left (or reclaimable dead) node on a new address.
            assert old.state in (NodeStateType.LEFT, NodeStateType.DEAD)
        assert c.local.incarnation >= c.members["me"].incarnation or c.local.leaving
        if isinstance(msg, wire.Alive) and msg.addr == old.addr:
            if old.state == NodeStateType.LEFT and msg.incarnation <= old.incarnation:
                # A member once left is not resurrected by an older alive.
                assert new.state == NodeStateType.LEFT
            if (
                old.state == NodeStateType.SUSPECT
                and msg.incarnation > old.incarnation
                and name != "me"
            ):
                # A suspect refuted with a higher incarnation becomes alive.
                assert new.state == NodeStateType.ALIVE
                assert new.incarnation == msg.incarnation
                assert CancelSuspicion(name) in effects or not had_suspicion
        if new.state == NodeStateType.SUSPECT:
            assert name in c.suspicions or name == "me"
        if name in c.suspicions:
            assert new.state == NodeStateType.SUSPECT


@settings(max_examples=500, deadline=None)
@given(st.lists(messages((A1,)), min_size=3, max_size=40))
def test_random_sequences_same_address(seq: list[object]) -> None:
    run(seq, same_address=True)


@settings(max_examples=500, deadline=None)
@given(st.lists(messages((A1, A2)), min_size=3, max_size=40))
def test_random_sequences_with_address_changes(seq: list[object]) -> None:
    run(seq, same_address=False)
