"""``twistd -n wanfed-gateway`` as a real process: the plugin is listed, takes the flags of
``wanfed gateway``, relays on a port chosen by the kernel, serves the admin API and stops cleanly
on SIGTERM; a retired or bad flag is one line on stderr."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_hellos import real_client_hello
from gateway_tls import recv_upto
from netutil import wait_for_lines
from twistd_support import run_twistd, stops_cleanly

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
HELLO = real_client_hello("tw.test")


@pytest.fixture
def backend() -> Iterator[int]:
    """A TCP server on a kernel-chosen port that reads the ClientHello, answers ``T`` and waits
    for the client to close (closing with unread bytes would send a RST, not ``T`` + FIN)."""
    ls = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                s, _ = ls.accept()
            except OSError:
                continue
            with s:
                s.settimeout(10)
                recv_upto(s, len(HELLO))
                s.sendall(b"T")
                s.recv(1)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield ls.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        ls.close()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def _wait_stats(admin: int, proc: subprocess.Popen[str], deadline: float) -> str:
    answers: list[str] = []

    def answered() -> bool:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"twistd exited {proc.returncode}: {out}{err}")
        stats = _get(f"http://127.0.0.1:{admin}/stats")
        if stats is not None:
            answers.append(stats)
        return bool(answers)

    if not poll_until(answered, deadline - time.monotonic(), interval=0.05):
        raise AssertionError("the admin API did not answer in time")
    return answers[0]


@pytest.mark.parametrize("data_path", ["loop", "twisted"])
def test_twistd_gateway_relays_serves_admin_and_stops_on_sigterm(
    tmp_path: Path, backend: int, data_path: str
) -> None:
    listing = run_twistd(tmp_path, "--help")
    assert "wanfed-gateway" in listing.stdout
    (tmp_path / "routes.json").write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "c", "endpoints": [{"address": "127.0.0.1", "port": backend}]}
                ],
                "filter_chains": [
                    {"server_names": ["tw.test"], "cluster": "c", "stat_prefix": "t"}
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "wanfed-gateway",
            "-routes",
            "routes.json",
            "-address",
            "127.0.0.1:0",
            "--admin-bind",  # both spellings, as with `wanfed gateway`
            "127.0.0.1:0",
            "-data-path",
            data_path,
            "-workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    with stops_cleanly(proc):
        # The admin API is on a port the kernel chose; the gateway logs it (to stdout, twistd's
        # log file under -n).
        (admin_line,), started = wait_for_lines(
            proc, proc.stdout, r"admin address: 127\.0\.0\.1:(\d+)"
        )
        admin = int(admin_line.group(1))
        assert admin != 0 and "Traceback" not in started
        stats = _wait_stats(admin, proc, time.monotonic() + 30)
        m = re.search(r"^listener\.127\.0\.0\.1_(\d+)\.downstream_cx_total: 0$", stats, re.M)
        assert m is not None and m.group(1) != "0", stats
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as s:
            s.sendall(HELLO)
            assert s.recv(1) == b"T"
        stats = _get(f"http://127.0.0.1:{admin}/stats") or ""
        assert "cluster.c.upstream_cx_total: 1\n" in stats
    assert _get(f"http://127.0.0.1:{admin}/stats") is None  # the admin socket is closed


@pytest.mark.parametrize(
    "command", [["twistd", "-n", "--pidfile=", "wanfed-gateway"], ["wanfed", "gateway"]]
)
def test_retired_splice_data_path_is_refused_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "routes.json").write_text('{"clusters": [], "filter_chains": []}')
    r = subprocess.run(
        [
            str(BIN / command[0]),
            *command[1:],
            "-routes",
            "routes.json",
            "-address",
            "127.0.0.1:0",
            "-data-path",
            "splice",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "invalid choice: 'splice'" in r.stderr
    assert "Traceback" not in r.stderr


def test_twistd_gateway_usage_error_is_one_line(tmp_path: Path) -> None:
    r = run_twistd(tmp_path, "-n", "--pidfile=", "wanfed-gateway", "-address", "127.0.0.1:0")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "twistd wanfed-gateway: give exactly one of -routes (a routes file) or -proxy-id"
        " (routes from the agent)"
    )
