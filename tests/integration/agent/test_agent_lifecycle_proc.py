"""The agent's lifecycle as real processes: each start-up error is one line with no traceback
(``wanfed agent`` and ``twistd -n wanfed``), the own-certificate check, SIGHUP reloads a service
file and a renewed certificate without stopping (an open TLS connection stays up), and
``leave_on_terminate`` both ways (the member is seen as left, or as failed)."""

from __future__ import annotations

import json
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
from netutil import free_port
from twistd_support import run_twistd
from twisted.internet import task, threads

from wanfedtx.cli.demo import poll_until
from wanfedtx.rpc.constants import ALPN_RPC_MULTIPLEX_V2
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.protocol import RPCClientProtocol
from wanfedtx.tls.certs import CertAndKey, create_ca, create_cert
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings

pytestmark = pytest.mark.integration
WANFED = Path(sys.executable).parent / "wanfed"
FAST_GOSSIP = (
    'gossip_lan { probe_interval = "200ms" probe_timeout = "100ms" suspicion_mult = 2 '
    'gossip_interval = "50ms" }\n'
)


def _base(tmp: Path, node: str, *, server: bool = True) -> tuple[str, int]:
    http = free_port()
    text = (
        f'node_name = "{node}"\ndatacenter = "dc1"\nbind_addr = "127.0.0.1"\n'
        f'client_addr = "127.0.0.1"\ndata_dir = "{tmp / ("data-" + node)}"\n'
        f"ports {{ http = {http} serf_lan = {free_port()} serf_wan = {free_port()} "
        f"server = {free_port()} dns = -1 }}\n"
    )
    if server:
        text += "server = true\nbootstrap_expect = 1\n"
    return text, http


def _pki(tmp: Path, ca: CertAndKey, node: str, name: str = "srv") -> dict[str, Path]:
    cert = create_cert(ca, "server", dc="dc1", node=node)
    files = {"ca_file": tmp / "ca.pem", "cert_file": tmp / f"{name}.pem",
             "key_file": tmp / f"{name}-key.pem"}
    files["ca_file"].write_bytes(ca.cert_pem)
    files["cert_file"].write_bytes(cert.cert_pem)
    files["key_file"].write_bytes(cert.key_pem)
    return files


def _tls_lines(files: dict[str, Path]) -> str:
    return "".join(f'{k} = "{v}"\n' for k, v in files.items())


def _start(cfg: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(WANFED), "agent", "-config-file", str(cfg), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _wait_http(proc: subprocess.Popen[str], port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"agent exited {proc.returncode}: {out}\n{err}")
        try:
            _get(f"http://127.0.0.1:{port}/v1/agent/self")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass


def _wait_services(proc: subprocess.Popen[str], port: int, present: bool, name: str,
                   deadline: float) -> None:
    """Poll the agent's services until ``name`` is (or, ``present=False``, is no longer) among
    them; fail if the agent exits or ``deadline`` (``time.monotonic()``) passes."""
    while (name in _get(f"http://127.0.0.1:{port}/v1/agent/services")) != present:
        assert proc.poll() is None and time.monotonic() < deadline
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass

def _exit_after_sigterm(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The output of an agent sent SIGTERM once it exited; if it has not within ``timeout``,
    fail with the end of its log (where its stop got stuck), not only the timeout."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        tail = "\n".join((out + err).splitlines()[-60:])
        pytest.fail(f"the agent did not exit within {timeout} s of SIGTERM; its log ends:\n{tail}")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=30)


# -- start-up errors ------------------------------------------------------------------------


def _startup_cases(tmp: Path) -> list[tuple[str, str]]:
    ca = create_ca()
    files = _pki(tmp, ca, "s1")
    return [
        (f'ca_file = "{tmp / "missing-ca.pem"}"\n',
         f"ca_file {tmp / 'missing-ca.pem'}: cannot read it: No such file or directory"),
        (f'cert_file = "{files["cert_file"]}"\n', "cert_file is set but key_file is not"),
        (f'ca_file = "{tmp}"\n', f"ca_file {tmp}: cannot read it: Is a directory"),
        (f'ca_file = "{files["key_file"]}"\n',
         f"ca_file {files['key_file']}: no PEM-encoded CERTIFICATE block found"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_startup_file_errors_are_one_line(tmp_path: Path, case: int) -> None:
    text, _ = _base(tmp_path, "s1")
    extra, expect = _startup_cases(tmp_path)[case]
    cfg = tmp_path / "a.hcl"
    cfg.write_text(text + extra)
    r = subprocess.run([str(WANFED), "agent", "-config-file", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    t = run_twistd(tmp_path, "-n", "--pidfile=", "wanfed", "--config", str(cfg))
    assert t.returncode == 1
    assert "Traceback" not in t.stdout + t.stderr
    lines = t.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], t.stderr


@pytest.mark.parametrize("port_key", ["http", "server", "serf_lan"])
def test_port_in_use_is_one_line(tmp_path: Path, port_key: str) -> None:
    text, _ = _base(tmp_path, "s1")
    http = int(text.split(f"{port_key} = ")[1].split()[0])  # the port taken
    cfg = tmp_path / "a.hcl"
    cfg.write_text(text)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", http))
        taken.listen()
        r = subprocess.run([str(WANFED), "agent", "-config-file", str(cfg)],
                           capture_output=True, text=True, timeout=60)
        t = run_twistd(tmp_path, "-n", "--pidfile=", "wanfed", "--config", str(cfg))
    for res in (r, t):
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert "Error starting agent" in lines[0] and f"{http}" in lines[0]
        assert "Address already in use" in lines[0]


def test_own_certificate_mismatch(tmp_path: Path) -> None:
    ca = create_ca()
    files = _pki(tmp_path, ca, "other")  # a certificate for node "other"
    text, http = _base(tmp_path, "s1")
    cfg = tmp_path / "a.hcl"
    cfg.write_text(text + _tls_lines(files) + "verify_server_hostname = true\n"
                   "verify_outgoing = true\n")
    r = subprocess.run([str(WANFED), "agent", "-config-file", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "does not match this server (node 's1', datacenter 'dc1')" in line
    assert "'other'" in line and "s1.server.dc1.consul" in line
    # without verify_server_hostname: a warning, and the agent runs
    cfg.write_text(text + _tls_lines(files))
    proc = _start(cfg)
    try:
        _wait_http(proc, http)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = _stop(proc)
    assert "does not match this server" in out + err


# -- SIGHUP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("server", [True, False], ids=["server", "client"])
def test_sighup_reloads_a_service_file_and_keeps_running(tmp_path: Path, server: bool) -> None:
    # a client agent keeps its services in its own local state (no catalog): found by the
    # user guide's test, where a client's reload registered nothing
    text, http = _base(tmp_path, "s1", server=server)
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "00-agent.hcl").write_text(text + 'log_level = "info"\n')
    proc = subprocess.Popen(
        [str(WANFED), "agent", "-config-dir", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_http(proc, http)
        assert "web" not in _get(f"http://127.0.0.1:{http}/v1/agent/services")
        (conf / "10-web.hcl").write_text('services { name = "web" port = 8080 }\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        _wait_services(proc, http, True, "web", deadline)
        (conf / "10-web.hcl").write_text('services { name = "web2" port = 8081 }\n')
        proc.send_signal(signal.SIGHUP)
        _wait_services(proc, http, False, "web", deadline)
        assert "web2" in _get(f"http://127.0.0.1:{http}/v1/agent/services")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = _stop(proc)
    assert "==> Caught signal: hangup" in out
    assert "==> Reloading configuration..." in out
    assert "Traceback" not in out + err


@pytest_twisted.ensureDeferred
async def test_sighup_renewed_certificate_new_connections_only(
    reactor: Any, tmp_path: Path
) -> None:
    ca = create_ca()
    files = _pki(tmp_path, ca, "s1")
    text, http = _base(tmp_path, "s1")
    server_port = int(text.split("server = ")[1].split()[0])
    cfg = tmp_path / "a.hcl"
    cfg.write_text(text + _tls_lines(files))
    proc = _start(cfg)
    mine = _pki(tmp_path, ca, "s1", "dialer")  # the dialing side's own copy
    tls = TLSConfigurator(TLSSettings(ca_file=str(mine["ca_file"]),
                                      cert_file=str(mine["cert_file"]),
                                      key_file=str(mine["key_file"]), domain="consul",
                                      node_name="s1", datacenter="dc1"))
    dialer = Dialer(reactor, "dc1", server=True, tls=tls, timeout=5.0)

    async def dial() -> RPCClientProtocol:
        rpc = RPCClientProtocol(multi=True)
        await dialer.dial_alpn(f"127.0.0.1:{server_port}", "dc1", "s1", ALPN_RPC_MULTIPLEX_V2,
                               rpc)
        return rpc

    def serial(rpc: RPCClientProtocol) -> int:
        cert = rpc.transport.getPeerCertificate()  # type: ignore[union-attr]
        return int(cert.get_serial_number())

    try:
        await threads.deferToThread(_wait_http, proc, http)
        old = await dial()
        assert await old.call("Catalog.ListDatacenters", {}) == ["dc1"]
        first = serial(old)
        renewed = create_cert(ca, "server", dc="dc1", node="s1")
        files["cert_file"].write_bytes(renewed.cert_pem)
        files["key_file"].write_bytes(renewed.key_pem)
        proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            new = await dial()
            if serial(new) != first:
                break
            new.transport.loseConnection()  # type: ignore[union-attr]
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            raise AssertionError("new connections never saw the renewed certificate")
        assert await new.call("Catalog.ListDatacenters", {}) == ["dc1"]
        # the connection opened before the reload is still up and served
        assert await old.call("Catalog.ListDatacenters", {}) == ["dc1"]
        assert serial(old) == first
        assert proc.poll() is None
        old.transport.loseConnection()  # type: ignore[union-attr]
        new.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await threads.deferToThread(_stop, proc)
    assert "Traceback" not in out + err


# -- leave_on_terminate ---------------------------------------------------------------------


@pytest.mark.parametrize(("leave", "status"), [(True, 3), (False, 4)])
def test_leave_on_terminate_left_or_failed(tmp_path: Path, leave: bool, status: int) -> None:
    a_text, a_http = _base(tmp_path, "a")
    a_cfg = tmp_path / "a.hcl"
    a_cfg.write_text(a_text + FAST_GOSSIP)
    b_text, b_http = _base(tmp_path, "b", server=False)
    serf_a = int(a_text.split("serf_lan = ")[1].split()[0])
    b_cfg = tmp_path / "b.hcl"
    b_cfg.write_text(b_text + FAST_GOSSIP + f'retry_join = ["127.0.0.1:{serf_a}"]\n'
                     f"leave_on_terminate = {str(leave).lower()}\n")
    a = _start(a_cfg)
    b = _start(b_cfg)
    try:
        _wait_http(a, a_http)
        _wait_http(b, b_http)

        def b_status() -> int | None:
            members = _get(f"http://127.0.0.1:{a_http}/v1/agent/members")
            return next((m["Status"] for m in members if m["Name"] == "b"), None)

        assert poll_until(lambda: b_status() == 1, 30, 0.05), "b never joined a"
        b.send_signal(signal.SIGTERM)
        out, err = _exit_after_sigterm(b)
        assert b.returncode == (0 if leave else 1), err
        if leave:
            assert "==> Graceful exit completed" in out
        else:
            assert "==> Graceful shutdown disabled. Exiting" in out
        assert poll_until(lambda: b_status() == status, 30, 0.05), (
            f"a sees b as {b_status()}, not {status}")
    finally:
        a.send_signal(signal.SIGTERM)
        _stop(a)
        _stop(b)


def test_twistd_agent_survives_sighup(tmp_path: Path) -> None:
    text, http = _base(tmp_path, "tw")
    cfg = tmp_path / "a.hcl"
    cfg.write_text(text)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "wanfed",
         "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        _wait_http(proc, http)
        (tmp_path / "a.hcl").write_text(text + 'services { name = "late" port = 1 }\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        _wait_services(proc, http, True, "late", deadline)
        proc.send_signal(signal.SIGTERM)
        out, err = _exit_after_sigterm(proc)
    finally:
        _stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in out + err
