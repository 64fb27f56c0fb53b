"""bench/rpc/bench_pool_calls.py keeps working: a short run on the real reactor, with and
without other timers, exits 0 and prints its one line.

Only that the harness runs is asserted here; its numbers belong in docs/benchmarks.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("timers", ["0", "500"])
def test_short_run(timers: str) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rpc" / "bench_pool_calls.py"),
         "--turns", "200", "--timers", timers],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(rf"^[0-9.]+ µs CPU per call \(16 calls per turn, 200 turns, {timers} "
                     r"other timers\)$", r.stdout.strip()), r.stdout
