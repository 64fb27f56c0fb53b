"""bench/http/kv_bench.py keeps working: a ``--quick`` run against one real ``wanfed agent``
process with 100 watchers exits 0 and prints its load rows, memory per watcher and wake-up line.

Only that the harness runs and its checks pass is asserted here; its numbers belong in
docs/benchmarks.md, never in a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_quick_run_on_one_server(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "http" / "kv_bench.py"),
            "--quick",
            "--servers", "1",
            "--requests", "300",
            "--watchers", "100",
            "--tmp", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for method in ("PUT", "GET"):
        row = rf"^servers=1 {method} -> s1 \(leader\) +300 req +\d+ req/s .* non-200 0 "
        assert re.search(row, out, re.M), out
    assert re.search(r"^memory per watcher: [\d.]+ KiB \(server RSS \d+ KiB -> \d+ KiB", out, re.M)
    assert re.search(r"^wake-up after one PUT: first \d+ ms, median \d+ ms, p99 \d+ ms, all \d+ ms",
                     out, re.M)
    assert "X-Consul-Index > " in out and ": 100/100; failures: none" in out
    assert "| 1 | PUT -> s1 (leader) | 300 |" in out
    # Nothing left behind after a successful run.
    assert list(tmp_path.iterdir()) == []
