"""``wanfed gateway -gateway=mesh -register -expose-servers`` against a real agent, and the
gateway's lifecycle as a process: SIGHUP never stops it, SIGTERM deregisters its service, a port
someone else listens on is refused with one line and a non-zero exit."""

from __future__ import annotations

import json
import re
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
from netutil import free_port, taken_port
from test_gateway_cli import poll, routes
from twistd_support import run_twistd
from twisted.internet import threads

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration
WANFED = Path(sys.executable).parent / "wanfed"


def _agent_config(tmp: Path) -> Any:
    hcl = tmp / "server.hcl"
    hcl.write_text(
        "\n".join(
            [
                'datacenter = "dc1"',
                'node_name = "s1"',
                'domain = "corp"',
                "server = true",
                "bootstrap_expect = 1",
                f'data_dir = "{tmp / "data"}"',
                'bind_addr = "127.0.0.1"',
                'client_addr = "127.0.0.1"',
                f"ports {{ http = {free_port()} server = {free_port()} dns = -1 "
                f"serf_lan = {free_port()} serf_wan = {free_port()} }}",
                "connect { enabled = true }",
            ]
        )
        + "\n"
    )
    return load(LoadOptions(config_files=[str(hcl)])).runtime


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[(TRACE|DEBUG|INFO|WARN|ERROR)\]")


def user_lines(text: str) -> list[str]:
    """The lines of ``text`` that are not log lines (what the user is told)."""
    return [line for line in text.strip().splitlines() if not LOG_LINE.match(line)]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest_twisted.ensureDeferred
async def test_register_expose_servers_sighup_and_deregister(
    reactor: Any, tmp_path: Path
) -> None:
    agent = Agent(_agent_config(tmp_path), reactor)
    agent.startService()
    (http,) = agent.http_urls()
    gw_port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(WANFED), "gateway", "-gateway=mesh", "-register", "-expose-servers",
            "-address", f"127.0.0.1:{gw_port}", "-wan-address", "127.0.0.2:8443",
            "-http-addr", http, "-admin-bind", f"127.0.0.1:{admin}", "-data-path", "twisted",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        def registered() -> Any:
            return _get(f"{http}/v1/catalog/service/mesh-gateway")

        (entry,) = await poll(reactor, registered, 30)
        assert entry["ServiceKind"] == "mesh-gateway"
        assert entry["ServiceMeta"] == {"consul-wan-federation": "1"}
        assert entry["ServiceAddress"] == "127.0.0.1"
        assert entry["ServicePort"] == gw_port
        assert entry["ServiceTaggedAddresses"]["wan"] == {"Address": "127.0.0.2", "Port": 8443}
        checks = await threads.deferToThread(_get, f"{http}/v1/agent/checks")
        (check,) = [c for c in checks.values() if c["ServiceID"] == "mesh-gateway"]
        assert check["Name"] == "mesh-gateway listening"

        def routed() -> bool:
            dump = _get(f"http://127.0.0.1:{admin}/config_dump")
            names = {e["cluster_name"] for e in dump["endpoints"]}
            return "server.dc1.corp" in names  # the agent's domain, not "consul"

        await poll(reactor, routed, 30)
        # the gateway listens on the registered address
        conn = await threads.deferToThread(socket.create_connection, ("127.0.0.1", gw_port), 5)
        conn.close()

        def check_passing() -> bool:
            checks = _get(f"{http}/v1/health/checks/mesh-gateway")
            return [c["Status"] for c in checks] == ["passing"]

        await poll(reactor, check_passing, 30)  # the agent's TCP check reaches the gateway
        proc.send_signal(signal.SIGHUP)  # reload: registration read again, never an exit

        def still_serving() -> bool:
            return proc.poll() is None and routed()

        assert await poll(reactor, still_serving, 10)
        proc.send_signal(signal.SIGTERM)
        out, err = await threads.deferToThread(proc.communicate, None, 30)
        assert proc.returncode == 0, err
        assert "Traceback" not in out + err
        assert "Registered service: mesh-gateway" in out + err
        assert "Deregistered service: mesh-gateway" in out + err

        def deregistered() -> bool:
            return _get(f"{http}/v1/catalog/service/mesh-gateway") == []

        assert await poll(reactor, deregistered, 30)
        services = await threads.deferToThread(_get, f"{http}/v1/agent/services")
        assert "mesh-gateway" not in services
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        await agent.stop()


def test_register_with_no_agent_is_one_line(tmp_path: Path) -> None:
    dead = free_port()
    r = subprocess.run(
        [str(WANFED), "gateway", "-gateway=mesh", "-register", "-address",
         f"127.0.0.1:{free_port()}", "-http-addr", f"127.0.0.1:{dead}", "-admin-bind", ""],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    lines = user_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith('Error registering service "mesh-gateway": PUT ')
    assert "Traceback" not in r.stdout + r.stderr


def _routes_gateway(path: Path, port: int, *extra: str) -> list[str]:
    return [str(WANFED), "gateway", "-routes", str(path), "-address", f"127.0.0.1:{port}",
            *extra]


@pytest.mark.parametrize(
    "data_path", [["-data-path", "loop", "-workers", "2"], ["-data-path", "twisted"]]
)
def test_second_gateway_on_a_used_port_exits_with_one_line(
    tmp_path: Path, data_path: list[str]
) -> None:
    path = tmp_path / "routes.json"
    routes(path, 1)
    port = free_port()
    first = subprocess.Popen(
        _routes_gateway(path, port, "-admin-bind", "", *data_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # wait (deadline-bound) until the first gateway listens
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert first.poll() is None and time.monotonic() < deadline
                try:
                    first.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
        r = subprocess.run(
            _routes_gateway(path, port, "-admin-bind", "", *data_path),
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode == 1
        assert user_lines(r.stderr) == [
            f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
        assert "Traceback" not in r.stdout + r.stderr
        assert first.poll() is None  # the first one keeps its port
    finally:
        first.terminate()
        first.communicate(timeout=30)


def test_admin_port_in_use_exits_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes(path, 1)
    with taken_port() as admin:
        r = subprocess.run(
            _routes_gateway(path, free_port(), "-admin-bind", f"127.0.0.1:{admin}"),
            capture_output=True, text=True, timeout=60,
        )
    assert r.returncode == 1
    assert user_lines(r.stderr) == [
        f"admin API: cannot listen on 127.0.0.1:{admin}: Address already in use"
    ]
    assert "Traceback" not in r.stdout + r.stderr


def test_twistd_gateway_port_in_use(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes(path, 1)
    with taken_port() as port:
        r = run_twistd(tmp_path, "-n", "--pidfile=", "wanfed-gateway", "-routes", str(path),
                       "-address", f"127.0.0.1:{port}", "-admin-bind", "")
    assert r.returncode == 1, r.stdout + r.stderr
    # twistd has started logging by then: the line is in its log (stdout with -n)
    said = [line for line in (r.stdout + r.stderr).splitlines() if "cannot listen" in line]
    assert len(said) == 1, r.stdout + r.stderr
    assert said[0].endswith(f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in r.stdout + r.stderr


def test_proxy_id_gateway_survives_sighup(tmp_path: Path) -> None:
    """Without a reachable agent the gateway keeps retrying; SIGHUP (a reload) must not end it:
    it used to die with 129."""
    log = tmp_path / "gateway.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(WANFED), "gateway", "-proxy-id", "mesh-gateway", "-http-addr",
             f"127.0.0.1:{free_port()}", "-admin-bind", ""],
            stdout=sink, stderr=sink, text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "gateway registration watch failed" not in log.read_text():  # it runs
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        for _ in range(3):
            proc.send_signal(signal.SIGHUP)
            with pytest.raises(subprocess.TimeoutExpired):  # it must not exit
                proc.wait(timeout=0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert "reloading the registration from the agent" in text
