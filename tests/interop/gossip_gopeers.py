"""Helpers for interop tests against Go memberlist/serf peers built from Debian's packages.

The peers (``tests/interop/go/{mlpeer,serfpeer}``) are built in GOPATH mode (Debian's
golang-github-hashicorp-* packages) into a cache directory keyed by a hash of their source and
the Go version, so CI builds them once per source change. ``WANFED_GO_CACHE`` overrides the
cache dir.
In CI (``CI=true``) a missing Go toolchain or library is a failure, never a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
GO_SRC = HERE / "go"
GOCODE = Path("/usr/share/gocode")
CACHE = Path(os.environ.get("WANFED_GO_CACHE", "/tmp/wanfedtx-go-cache"))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run interop tests; check scripts/apt-packages.txt)")
    pytest.skip(reason)


def build_peer(name: str) -> Path:
    go = shutil.which("go")
    if go is None:
        _missing("the Go toolchain is missing: apt-get install golang-go")
    assert go is not None
    for lib in ("memberlist", "serf"):
        if not (GOCODE / "src/github.com/hashicorp" / lib).is_dir():
            _missing(f"golang-github-hashicorp-{lib}-dev is not installed")
    src = GO_SRC / name / "main.go"
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(src.read_bytes() + version.encode()).hexdigest()[:16]
    out = CACHE / f"{name}-{digest}"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOPATH=f"{CACHE / 'gopath'}:{GOCODE}",
        GOCACHE=str(CACHE / "gocache"),
        GOFLAGS="",
    )
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    subprocess.run(
        [go, "build", "-o", str(tmp), "."],
        cwd=GO_SRC / name,
        env=env,
        check=True,
        capture_output=True,
    )
    tmp.rename(out)
    return out



class GoPeer:
    """A running Go peer: JSON events from stdout, JSON commands to stdin."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._e = threading.Thread(target=self._read_err, daemon=True)
        self._e.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "garbage", "line": line.decode(errors="replace")}
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def find(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        with self._cond:
            for ev in self.events:
                if pred(ev):
                    return ev
        return None

    def wait_blocking(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Block (no reactor running) until an event matches; fail at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for an event from {self.argv[0]}; got {self.events}"
                        f"\nstderr: {''.join(self.stderr[-30:])}"
                    )
                self._cond.wait(left)

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll (under the reactor) until an event matches; fail at the deadline."""
        from twisted.internet import reactor, task

        deadline = time.monotonic() + timeout
        while True:
            ev = self.find(pred)
            if ev is not None:
                return ev
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for an event from {self.argv[0]}; got {self.events}"
                    f"\nstderr: {''.join(self.stderr[-30:])}"
                )
            await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
