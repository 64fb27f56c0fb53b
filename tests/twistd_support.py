"""Test support for ``twistd`` subprocesses: stop one with SIGTERM, check it shut down cleanly."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stops_cleanly(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Run the block against the running ``twistd``, then SIGTERM it and check that it ends
    without a traceback and with "Server Shut Down."; killed instead if the block fails."""
    try:
        yield
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # twistd re-raises the signal that stopped it, so it ends "killed by SIGTERM" once clean
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in out + err
    assert "Server Shut Down." in out + err
