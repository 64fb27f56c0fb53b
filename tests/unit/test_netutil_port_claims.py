"""Two test runs side by side never get the same pre-chosen port: ``netutil.free_port`` claims
each port it hands out with a record lock that another process sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import netutil

TESTS = Path(__file__).resolve().parents[1]


def test_a_port_handed_out_here_is_refused_to_another_process() -> None:
    port = netutil.free_port()
    claims = Path(netutil.CLAIMS_FILE)
    probe = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import netutil; "
             f"print(netutil._claim({port}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False"]  # refused while this process lives
    # and taken once no live process holds it: a claims file of this test's own
    private = claims.with_name(claims.name + f".test{os.getpid()}")
    probe = (f"import os, sys; os.environ['WANFED_PORT_CLAIMS'] = {str(private)!r}; "
             f"sys.path.insert(0, {str(TESTS)!r}); import netutil; print(netutil._claim({port}))")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True).stdout.split()
    finally:
        private.unlink(missing_ok=True)
    assert out == ["True"]
