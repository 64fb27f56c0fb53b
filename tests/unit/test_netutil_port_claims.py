"""Two test runs side by side never get the same pre-chosen port: ``netutil.free_port`` claims
each port it hands out with a record lock that another process sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import netutil

TESTS = Path(__file__).resolve().parents[1]


def test_a_port_handed_out_here_is_refused_to_another_process() -> None:
    port = netutil.free_port()
    probe = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import netutil; "
             f"print(netutil._claim({port}), netutil._claim({port + 1}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    # refused while this process lives; a neighbour nobody claimed is free to take
    assert out[0] == "False"
    assert out[1] == "True" or port + 1 in netutil._handed_out
