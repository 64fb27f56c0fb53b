"""The linearizability checker itself: known-good and known-bad register histories."""

from __future__ import annotations

import math
import random

from wanfedtx.raft.linearizability import Op, check_history, check_register


def test_sequential_ok_and_stale_read_rejected() -> None:
    h = [Op("k", "put", 1, 0, 1), Op("k", "get", 1, 2, 3), Op("k", "put", 2, 4, 5)]
    assert check_register(h)
    assert not check_register([*h, Op("k", "get", 1, 6, 7)])  # stale read after put 2 completed


def test_concurrent_write_may_order_either_way() -> None:
    h = [Op("k", "put", 1, 0, 10), Op("k", "put", 2, 1, 9), Op("k", "get", 1, 11, 12)]
    assert check_register(h)
    h2 = [*h, Op("k", "get", 2, 13, 14)]
    assert not check_register(h2)  # no write happened between the two reads


def test_unknown_write_may_or_may_not_apply() -> None:
    base = [Op("k", "put", 1, 0, 1), Op("k", "put", 2, 2, math.inf)]
    assert check_register([*base, Op("k", "get", 1, 3, 4)])
    assert check_register([*base, Op("k", "get", 2, 3, 4)])
    assert not check_register([*base, Op("k", "get", 2, 3, 4), Op("k", "get", 1, 5, 6)])
    assert not check_register([*base, Op("k", "get", 3, 3, 4)])  # never written


def test_lost_acknowledged_write_detected() -> None:
    h = [Op("a", "put", "x", 0, 1), Op("a", "get", None, 2, 3)]
    r = check_history(h)
    assert not r.ok and r.key == "a"


def test_random_sequential_histories_pass_and_mutations_fail() -> None:
    rng = random.Random(7)
    for _ in range(50):
        t, state, h = 0.0, None, []
        for v in range(30):
            t += 1
            if rng.random() < 0.5:
                state = v
                h.append(Op("k", "put", v, t, t + 0.5))
            else:
                h.append(Op("k", "get", state, t, t + 0.5))
        assert check_register(h)
        reads = [i for i, o in enumerate(h) if o.kind == "get" and o.value is not None]
        if reads:
            i = rng.choice(reads)
            h[i] = Op("k", "get", -1, h[i].invoke, h[i].complete)
            assert not check_register(h)
