"""bench/http/kv_vs_etcd.py and bench/http/kv_request_cpu.py keep working: a short run of each
exits 0 and prints its rows (etcd's side too when Debian's ``etcd`` is installed).

Only that the harnesses run and their checks pass is asserted; numbers belong in
docs/benchmarks.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install -y wrk)")
@pytest.mark.parametrize("clients", ["leader", "spread"])
def test_short_run_beside_etcd(tmp_path: Path, clients: str) -> None:
    systems = "wanfed,etcd" if shutil.which("etcd") else "wanfed"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "http" / "kv_vs_etcd.py"), "--connections", "4",
         "--duration", "1", "--systems", systems, "--tmp", str(tmp_path), "--clients", clients],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for system in systems.split(","):
        assert re.search(rf"^{system} +c=4 +\d+ writes/s .* errors 0 ", out, re.M), out
    assert re.search(r"^\| 4 \| \d+ \| ", out, re.M), out
    assert f"clients to the {clients}" in out
    assert list(tmp_path.iterdir()) == []


def test_request_cpu_microbench() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "http" / "kv_request_cpu.py"), "--requests", "500",
         "--connections", "8"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"µs CPU per request .*; 500 answered 200", r.stdout), r.stdout
