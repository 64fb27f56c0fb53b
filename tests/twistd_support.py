"""Test support for ``twistd`` subprocesses: run one to completion, or stop a running one with
SIGTERM and check it shut down cleanly (never leaving one behind when a test fails)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TWISTD = Path(sys.executable).parent / "twistd"


@contextmanager
def killed_if_left(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Run the block, which ends ``proc`` itself; if the block fails first, kill ``proc`` so
    that no process outlives its test."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def assert_shut_down_cleanly(proc: subprocess.Popen[str], out: str, err: str) -> None:
    """``twistd`` ended on SIGTERM without a traceback and with "Server Shut Down."."""
    # twistd re-raises the signal that stopped it, so it ends "killed by SIGTERM" once clean
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in out + err
    assert "Server Shut Down." in out + err


@contextmanager
def stops_cleanly(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Run the block against the running ``twistd``, then SIGTERM it and check that it ends
    without a traceback and with "Server Shut Down."; killed instead if the block fails."""
    with killed_if_left(proc):
        yield
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert_shut_down_cleanly(proc, out, err)


def run_twistd(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``twistd *args`` run in ``cwd`` to its end (60 s at most), output captured as text."""
    return subprocess.run(
        [str(TWISTD), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )
