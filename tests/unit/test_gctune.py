"""``tune_gc``: start-up objects frozen, thresholds raised, and the agent's ``run`` applies it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wanfedtx.gctune import THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_and_sets_thresholds(restore_gc: None) -> None:
    gc.unfreeze()
    keep = [[i] for i in range(1000)]  # tracked containers alive "at start-up"
    tune_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() >= len(keep)
    tracked = {id(o) for o in gc.get_objects()}
    assert id(keep[0]) not in tracked  # frozen objects are out of every generation


def test_agent_run_tunes_gc_before_the_reactor_runs() -> None:
    import inspect

    from wanfedtx.cli import agent

    source = inspect.getsource(agent.run)
    assert source.index("tune_gc()") < source.index("reactor.run()")
