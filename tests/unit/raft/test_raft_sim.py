"""Deterministic simulation of 3- and 5-node raft clusters under loss, delay, reordering,
partitions, crashes (losing unsynced writes) and restarts; safety is checked after every step.

Seeds: ``WANFED_RAFT_SEEDS`` (default 200 per configuration set, split across the tests below);
rerun one seed with ``WANFED_RAFT_SEED=<n>`` (prints a trace).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from raft_sim import Sim

N_SEEDS = int(os.environ.get("WANFED_RAFT_SEEDS", "200"))
ONE = os.environ.get("WANFED_RAFT_SEED")


def _seeds(offset: int, share: float) -> list[int]:
    if ONE is not None:
        return [int(ONE)]
    return list(range(offset, offset + max(1, int(N_SEEDS * share))))


def _run(seed: int, **kw: Any) -> Sim:
    trace = print if ONE is not None else None
    sim = Sim(seed, trace=trace, **kw)  # type: ignore[arg-type]
    try:
        sim.run(duration=float(os.environ.get("WANFED_RAFT_DURATION", "30")))
        sim.heal_and_converge()
    except BaseException:
        print(f"raft simulation failed: rerun with WANFED_RAFT_SEED={seed}")
        raise
    return sim


@pytest.mark.parametrize("seed", _seeds(0, 0.4))
def test_raft_sim_3_nodes(seed: int) -> None:
    sim = _run(seed, n=3)
    assert sim.applied, "nothing was ever committed"


@pytest.mark.parametrize("seed", _seeds(100_000, 0.3))
def test_raft_sim_5_nodes(seed: int) -> None:
    sim = _run(seed, n=5)
    assert sim.applied


@pytest.mark.parametrize("seed", _seeds(200_000, 0.3))
def test_raft_sim_5_nodes_membership(seed: int) -> None:
    sim = _run(seed, n=5, membership=True)
    assert sim.applied


@pytest.mark.parametrize("seed", _seeds(300_000, 0.1))
def test_raft_sim_3_nodes_real_storage(seed: int, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same checks with RaftStorage underneath: crashes cut unsynced bytes anywhere (torn
    records) and restarts go through segment recovery. fsync/fdatasync are no-ops here (speed):
    what a crash loses is decided by the simulation, from the last sync() on."""
    import wanfedtx.raft.storage as storage

    monkeypatch.setattr(storage.os, "fsync", lambda fd: None)
    monkeypatch.setattr(storage.os, "fdatasync", lambda fd: None)
    sim = _run(seed, n=3, data_dir=tmp_path)
    assert sim.applied


def _run_with_hash_seed(seed: int, hash_seed: str, **kw: Any) -> None:
    """Run one simulation in a child whose ``PYTHONHASHSEED`` is fixed: set iteration order
    steers the schedule, so a seed alone does not replay a failure found in another process."""
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from raft_sim import Sim\n"
        f"sim = Sim({seed}, **{kw!r})\n"
        "sim.run(duration=30.0)\n"
        "sim.heal_and_converge()\n"
    )
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", script, str(here), str(here.parents[1])],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_leader_made_by_messages_alone_keeps_ticking() -> None:
    """Regression: with this hash seed, seed 200004 has n4 remove itself (its election deadline
    becomes infinite), come back in a later configuration and win an election through messages
    alone; the simulator queued ticks only after ticks, so that leader never sent a heartbeat or
    stepped down, and the cluster never converged (found by a full run under load). The
    simulator now re-arms a node's tick after every input, as the raft service does."""
    _run_with_hash_seed(200004, "95", n=5, membership=True)


def test_a_stale_leader_of_an_earlier_term_is_not_a_completeness_violation() -> None:
    """Regression (a fresh-clone CI run): with this hash seed, seed 100047 has n1 win term 9 and
    commit entry 42/9, then vote answers of term 8 delayed 0.4 s reach n0, which becomes leader of
    term 8 without that entry. Raft allows it (n0 steps down at the first answer carrying term 9,
    and no quorum accepts its term); its completeness promise is to the leaders of later terms.
    The check compared every leader with every committed entry; it now skips entries committed
    in the new leader's term or a later one."""
    _run_with_hash_seed(100047, "13", n=5)
