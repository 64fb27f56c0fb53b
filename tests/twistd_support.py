"""Test support for ``twistd`` subprocesses: run one to completion, or stop a running one with
SIGTERM and check it shut down cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TWISTD = Path(sys.executable).parent / "twistd"


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


def run_twistd(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``twistd *args`` run in ``cwd`` to its end (60 s at most), output captured as text."""
    return subprocess.run(
        [str(TWISTD), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )
