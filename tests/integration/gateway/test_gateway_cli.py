"""`wanfed gateway` as a process: serves routes, admin API, SIGHUP reload, clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from gateway_hellos import real_client_hello
from loop_support import require_compiled_relay
from netutil import wait_for_lines
from twisted.internet import protocol, task, threads

pytestmark = pytest.mark.integration
HELLO = real_client_hello("cli.test")


class Named(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.name)  # type: ignore[attr-defined, union-attr]


def routes(path: Path, port: int) -> None:
    path.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1", "port": port}]}],
                "filter_chains": [
                    {"server_names": ["cli.test"], "cluster": "c", "stat_prefix": "t"}
                ],
            }
        )
    )


def first_byte(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(HELLO)
        return s.recv(1)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


async def poll(reactor: Any, fn: Any, timeout: float = 20.0) -> Any:
    """Run the blocking ``fn`` in a thread until it returns something true; deadline-bound."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            out = await threads.deferToThread(fn)
            if out:
                return out
        except OSError as e:
            last = e
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"condition not met in time (last error {last})")


@pytest.mark.parametrize("data_path", ["loop", "twisted"])
@pytest_twisted.ensureDeferred
async def test_cli_serves_reloads_on_sighup_and_exits(
    reactor: Any, tmp_path: Path, data_path: str
) -> None:
    a = reactor.listenTCP(0, protocol.Factory.forProtocol(Named), interface="127.0.0.1")
    a.factory.name = b"A"
    b = reactor.listenTCP(0, protocol.Factory.forProtocol(Named), interface="127.0.0.1")
    b.factory.name = b"B"
    path = tmp_path / "routes.json"
    routes(path, a.getHost().port)
    exe = Path(sys.executable).parent / "wanfed"
    proc = subprocess.Popen(
        [
            str(exe),
            "gateway",
            "-address",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
            "-routes",
            str(path),
            "-data-path",
            data_path,
            "-reload-interval",
            "0",
            "-log-level",
            "info",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Both listen on ports the kernel chose; the gateway logs them.
        (listening, admin_line), started = await threads.deferToThread(
            wait_for_lines,
            proc,
            proc.stderr,
            r"gateway listening on 127\.0\.0\.1:(\d+) ",
            r"admin address: 127\.0\.0\.1:(\d+)$",
        )
        port, admin = int(listening.group(1)), int(admin_line.group(1))
        assert port != 0 and admin != 0 and "Traceback" not in started
        ready = await poll(reactor, lambda: get(f"http://127.0.0.1:{admin}/ready"))
        assert ready.strip() == "LIVE"
        assert await threads.deferToThread(first_byte, ("127.0.0.1", port)) == b"A"
        routes(path, b.getHost().port)
        os.kill(proc.pid, signal.SIGHUP)

        def routed_to_b() -> bool:
            dump = json.loads(get(f"http://127.0.0.1:{admin}/config_dump"))
            return bool(dump["endpoints"][0]["endpoints"][0]["port"] == b.getHost().port)

        await poll(reactor, routed_to_b)
        assert await threads.deferToThread(first_byte, ("127.0.0.1", port)) == b"B"
        stats = await threads.deferToThread(get, f"http://127.0.0.1:{admin}/stats")
        assert "cluster.c.upstream_cx_total: 2\n" in stats
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = await threads.deferToThread(proc.communicate, None, 20)
        await a.stopListening()
        await b.stopListening()
    assert proc.returncode == 0, err.decode()


@pytest_twisted.ensureDeferred
async def test_cli_stops_on_sigint_when_started_with_sigint_ignored(
    reactor: Any, tmp_path: Path
) -> None:
    """A gateway started as a script's background job (SIGINT ignored, ``nohup ... &``) still
    stops cleanly on Ctrl-C, as Envoy does."""
    path = tmp_path / "routes.json"
    routes(path, 9)
    exe = Path(sys.executable).parent / "wanfed"
    proc = subprocess.Popen(
        [str(exe), "gateway", "-address", "127.0.0.1:0", "-admin-bind", "127.0.0.1:0",
         "-routes", str(path), "-reload-interval", "0", "-log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        await threads.deferToThread(wait_for_lines, proc, proc.stderr,
                                    r"gateway listening on 127\.0\.0\.1:(\d+) ")
        proc.send_signal(signal.SIGINT)
        _out, err = await threads.deferToThread(proc.communicate, None, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


def relayed_then_closed(addr: tuple[str, int]) -> bytes:
    """One relayed connection: the hello out, the backend's byte back, then the client's FIN
    and the backend's close end it."""
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(HELLO)
        first = s.recv(1)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return first


class NamedThenClose(Named):
    def readConnectionLost(self) -> None:  # the client's FIN: close our side too
        self.transport.loseConnection()  # type: ignore[union-attr]


@pytest.mark.parametrize(("relay", "named"), [("c", "compiled relay"), ("python", "Python relay")])
@pytest_twisted.ensureDeferred
async def test_cli_loop_relay_choice_is_used_and_named(
    reactor: Any, tmp_path: Path, relay: str, named: str
) -> None:
    """``-loop-relay c|python`` picks who relays on the loop path; the start-up line names it,
    and the connection's counters and close reach the admin API either way."""
    if relay == "c":
        require_compiled_relay()
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from zope.interface import directlyProvides

    class Factory(protocol.Factory):
        def buildProtocol(self, addr: Any) -> protocol.Protocol:
            p = NamedThenClose()
            p.factory = self
            directlyProvides(p, IHalfCloseableProtocol)
            return p

    f = Factory()
    f.name = b"A"  # type: ignore[attr-defined]
    a = reactor.listenTCP(0, f, interface="127.0.0.1")
    path = tmp_path / "routes.json"
    routes(path, a.getHost().port)
    exe = Path(sys.executable).parent / "wanfed"
    proc = subprocess.Popen(
        [str(exe), "gateway", "-address", "127.0.0.1:0", "-admin-bind", "127.0.0.1:0",
         "-routes", str(path), "-data-path", "loop", "-workers", "1", "-loop-relay", relay,
         "-reload-interval", "0", "-log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        (listening, admin_line), _started = await threads.deferToThread(
            wait_for_lines, proc, proc.stderr,
            r"gateway listening on 127\.0\.0\.1:(\d+) \(loop data path, (.+)\)",
            r"admin address: 127\.0\.0\.1:(\d+)$",
        )
        assert listening.group(2) == named
        port, admin = int(listening.group(1)), int(admin_line.group(1))
        assert await threads.deferToThread(relayed_then_closed, ("127.0.0.1", port)) == b"A"

        def closed_and_counted() -> bool:
            stats = get(f"http://127.0.0.1:{admin}/stats")
            return (
                "downstream_cx_active: 0\n" in stats
                and "cluster.c.upstream_cx_rx_bytes_total: 1\n" in stats
                and f"cluster.c.upstream_cx_tx_bytes_total: {len(HELLO)}\n" in stats
            )

        await poll(reactor, closed_and_counted)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = await threads.deferToThread(proc.communicate, None, 20)
        await a.stopListening()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
