"""Every ``wanfed`` HTTP verb end to end against a real agent (``wanfed agent -dev -data-dir``
on loopback: raft on): output shapes and exit codes as Consul's. Also ``validate`` (the same
one-line errors as the agent), ``keygen``, ``monitor`` (streams, exits 0 on SIGINT) and
``leave`` (the agent exits)."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from netutil import free_port
from twistd_support import killed_if_left

from wanfedtx.cli.demo import poll_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CASE = Path(__file__).resolve().parents[2] / "data" / "case-wanfed-gw"


@attrs.frozen
class Agent:
    proc: subprocess.Popen[str]
    addr: str
    server_port: int

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONSUL_HTTP", "WANFED_HTTP"))}
        env["CONSUL_HTTP_ADDR"] = self.addr
        return env


def wanfed(agent: Agent | None, *args: str, stdin: str | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = agent.env() if agent is not None else dict(os.environ)
    return subprocess.run([str(BIN / "wanfed"), *args], capture_output=True, text=True,
                          timeout=60, env=env, input=stdin, cwd=cwd)


def start_agent(tmp: Path, node: str, *extra: str) -> Agent:
    port, server_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN / "wanfed"), "agent", "-dev", "-data-dir", str(tmp / "data"), "-node", node,
         "-http-port", str(port),
         "-serf-lan-port", str(free_port()), "-serf-wan-port", str(free_port()),
         "-server-port", str(server_port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
    )
    agent = Agent(proc, f"127.0.0.1:{port}", server_port)

    def has_leader() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {proc.communicate()}")
        r = wanfed(agent, "operator", "raft", "list-peers")
        return r.returncode == 0 and "leader" in r.stdout

    if not poll_until(has_leader, 60):
        proc.kill()
        raise AssertionError(f"no raft leader: {proc.communicate()}")
    return agent


def stop_agent(agent: Agent) -> str:
    """Stop the agent (SIGTERM); its stdout."""
    if agent.proc.returncode is not None:
        return ""
    if agent.proc.poll() is None:
        agent.proc.send_signal(signal.SIGTERM)
    try:
        out, _ = agent.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        agent.proc.kill()
        out, _ = agent.proc.communicate()
    return out or ""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_agent(tmp_path_factory.mktemp("agent"), "n1")
    yield a
    stop_agent(a)


def test_kv_round_trip(agent: Agent, tmp_path: Path) -> None:
    r = wanfed(agent, "kv", "put", "app/config", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Success! Data written to: app/config\n", "")
    assert wanfed(agent, "kv", "put", "-flags=42", "app/bin", "-", stdin="x y").returncode == 0
    assert wanfed(agent, "kv", "get", "app/config").stdout == "hello\n"
    detailed = wanfed(agent, "kv", "get", "-detailed", "app/bin").stdout.splitlines()
    assert detailed[1:3] == ["Flags            42", "Key              app/bin"]
    assert detailed[-1] == "Value            x y"
    assert wanfed(agent, "kv", "get", "-recurse", "app").stdout == "app/bin:x y\napp/config:hello\n"
    assert wanfed(agent, "kv", "get", "-keys").stdout.splitlines()[0] == "app/"
    missing = wanfed(agent, "kv", "get", "app/missing")
    assert (missing.returncode, missing.stderr) == (1, "Error! No key exists at: app/missing\n")
    exported = wanfed(agent, "kv", "export", "app/")
    assert exported.returncode == 0
    assert json.loads(exported.stdout) == [
        {"key": "app/bin", "flags": 42, "value": base64.b64encode(b"x y").decode()},
        {"key": "app/config", "flags": 0, "value": "aGVsbG8="},
    ]
    (tmp_path / "kv.json").write_text(exported.stdout)
    deleted = wanfed(agent, "kv", "delete", "-recurse", "app")
    assert deleted.stdout == "Success! Deleted keys with prefix: app\n"
    assert wanfed(agent, "kv", "get", "-recurse", "app").stdout == ""
    imported = wanfed(agent, "kv", "import", f"@{tmp_path / 'kv.json'}")
    assert (imported.returncode, imported.stdout) == (
        0, "Imported: app/bin\nImported: app/config\n")
    assert wanfed(agent, "kv", "export", "app/").stdout == exported.stdout
    cas = wanfed(agent, "kv", "put", "-cas", "-modify-index=1", "app/config", "new")
    assert (cas.returncode, cas.stderr) == (1, "Error! Did not write to app/config: CAS failed\n")
    one = wanfed(agent, "kv", "delete", "app/config")
    assert (one.returncode, one.stdout) == (0, "Success! Deleted key: app/config\n")


def test_catalog(agent: Agent) -> None:
    assert wanfed(agent, "catalog", "datacenters").stdout == "dc1\n"

    def registered() -> bool:
        return "n1" in wanfed(agent, "catalog", "nodes").stdout

    assert poll_until(registered, 30)
    nodes = wanfed(agent, "catalog", "nodes").stdout.splitlines()
    assert nodes[0].split() == ["Node", "ID", "Address", "DC"]
    assert nodes[1].split()[0::2] == ["n1", "127.0.0.1"] and nodes[1].split()[3] == "dc1"
    assert "-" not in nodes[1].split()[1]
    services = wanfed(agent, "catalog", "services")
    assert (services.returncode, services.stdout) == (0, "consul\n")
    assert wanfed(agent, "catalog", "services", "-node=n1").stdout == "consul\n"
    none = wanfed(agent, "catalog", "nodes", "-service=nothing")
    assert (none.returncode, none.stderr) == (
        0, "No nodes match the given query - try expanding your search.\n")


def test_operator_raft(agent: Agent) -> None:
    peers = wanfed(agent, "operator", "raft", "list-peers")
    assert peers.returncode == 0
    header, row = peers.stdout.splitlines()
    assert header.split() == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    cells = row.split()
    assert cells[0] == "n1" and cells[2] == f"127.0.0.1:{agent.server_port}"
    assert cells[3:] == ["leader", "true", "3"]
    assert wanfed(agent, "operator", "raft", "list-peers", "-stale").returncode == 0
    unknown = wanfed(agent, "operator", "raft", "remove-peer", "-address=10.9.9.9:8300")
    assert (unknown.returncode, unknown.stderr) == (
        1, 'Error removing peer: Unexpected response code: 500 (address "10.9.9.9:8300" was '
        "not found in the Raft configuration)\n")
    last = wanfed(agent, "operator", "raft", "remove-peer", f"-id={cells[1]}")
    assert last.returncode == 1 and "cannot remove the last voter" in last.stderr


def test_info_reload_join_force_leave(agent: Agent) -> None:
    info = wanfed(agent, "info")
    assert info.returncode == 0
    lines = info.stdout.splitlines()
    sections = [line for line in lines if not line.startswith("\t")]
    assert sections == ["agent:", "build:", "consul:", "raft:", "runtime:", "serf_lan:",
                        "serf_wan:"]
    assert lines[lines.index("build:") + 1].startswith("\tprerelease = ")
    for line in ("\tserver = true", "\tleader = true", "\tstate = Leader", "\tnum_peers = 0",
                 "\tmembers = 1", "\tacl = disabled"):
        assert line in lines, info.stdout
    reload = wanfed(agent, "reload")  # the agent re-reads its config files, as on SIGHUP
    assert reload.returncode == 0, reload.stderr
    assert reload.stdout == "Configuration reload triggered\n"
    bad = wanfed(agent, "join", f"127.0.0.1:{free_port()}")
    assert bad.returncode == 1 and bad.stderr.endswith("Failed to join any nodes.\n")
    gone = wanfed(agent, "force-leave", "nobody")
    assert (gone.returncode, gone.stderr) == (
        1, "Error force leaving: Unexpected response code: 500 (agent: No node found with "
        "name 'nobody')\n")


def _first_monitor_line(agent: Agent, proc: subprocess.Popen[str], want: str = "") -> str:
    """The first streamed line (containing ``want``, when given: other DEBUG lines, a leader
    routine's, may come first)."""
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        wanfed(agent, "kv", "put", "monitor/poke", "1")  # the agent logs each request (DEBUG)
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready and proc.stdout is not None:
            line = proc.stdout.readline()
            if line and want in line:
                return line
    return line


def test_monitor_at_debug_on_an_agent_at_info(tmp_path: Path) -> None:
    agent = start_agent(tmp_path, "quiet", "-log-level", "info")
    proc = subprocess.Popen([str(BIN / "wanfed"), "monitor", "-log-level=debug"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=agent.env())
    try:
        want = "[DEBUG] agent: Request finished: method=PUT url=/v1/kv/monitor/poke"
        line = _first_monitor_line(agent, proc, want)
        assert want in line
    finally:
        proc.kill()
        proc.communicate()
        out = stop_agent(agent)
    assert "Request finished" not in out  # the agent's own output stays at INFO
    assert "[INFO]  agent: Starting agent: node=quiet" in out


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started_with_sigint", ["default", "ignored"])
def test_monitor_streams_then_exits_0_on_sigint(agent: Agent, started_with_sigint: str) -> None:
    """Ctrl-C stops it, also when it was started with SIGINT ignored (a background job of a
    script: ``consul monitor &``), as Go's signal handling does."""
    proc = subprocess.Popen([str(BIN / "wanfed"), "monitor", "-log-level=debug"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=agent.env(),
                            preexec_fn=_ignore_sigint if started_with_sigint == "ignored" else None)
    with killed_if_left(proc):
        line = _first_monitor_line(agent, proc)
        assert "[DEBUG]" in line or "[INFO]" in line, line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err
    bad = wanfed(agent, "monitor", "-log-level=nope")
    assert (bad.returncode, bad.stderr) == (
        1, "Error starting monitor: Unexpected response code: 400 (Unknown log level: nope)\n")


def test_keygen_format() -> None:
    r = wanfed(None, "keygen")
    assert r.returncode == 0 and len(base64.b64decode(r.stdout.strip(), validate=True)) == 32


@pytest.mark.parametrize(
    "text",
    [
        'datacenter = "x"\nconnect {\n  bogus = true\n}\n',
        'ports {\n  http = "8500"\n}\n',
        'retry_interval = "10 s"\n',
        "services {\n  name = \n}\n",
        'server = true\nprimary_gateways = ["gw:1"]\n',
    ],
)
def test_validate_gives_the_agents_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.hcl"
    path.write_text(text)
    agent = subprocess.run([str(BIN / "wanfed"), "agent", "-config-file", str(path)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    checked = wanfed(None, "validate", str(path), cwd=tmp_path)
    assert agent.returncode == checked.returncode == 1
    assert checked.stderr == f"Config validation failed: {agent.stderr.strip()}\n"
    assert "Traceback" not in checked.stderr


@pytest.mark.parametrize("dc", ["primary", "secondary"])
def test_validate_case_wanfed_gw(tmp_path: Path, dc: str) -> None:
    d = tmp_path / dc
    d.mkdir()
    for f in [CASE / "base.hcl", CASE / "bind.hcl", *(CASE / dc).iterdir()]:
        shutil.copy(f, d / f.name)
    agent = subprocess.run([str(BIN / "wanfed"), "agent", "-config-dir", str(d)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    checked = wanfed(None, "validate", str(d), cwd=tmp_path)
    assert agent.returncode == checked.returncode == 1
    assert checked.stderr == f"Config validation failed: {agent.stderr.strip()}\n"
    # What `consul agent -dev` adds (server, a data dir), and an address on any host (the
    # files advertise eth0's).
    (d / "zz-dev.hcl").write_text(
        f'server = true\ndata_dir = "{tmp_path / "data"}"\nadvertise_addr = "127.0.0.1"\n')
    good = wanfed(None, "validate", str(d), cwd=tmp_path)
    assert (good.returncode, good.stdout) == (0, "Configuration is valid!\n"), good.stderr


def test_leave_stops_the_agent(tmp_path: Path) -> None:
    agent = start_agent(tmp_path, "leaver")
    try:
        r = wanfed(agent, "leave")
        assert (r.returncode, r.stdout) == (0, "Graceful leave complete\n")
        agent.proc.wait(timeout=30)
        assert agent.proc.returncode == 0
    finally:
        stop_agent(agent)
    refused = wanfed(agent, "kv", "get", "x")
    assert refused.returncode == 1
    assert refused.stderr.startswith('Error querying Consul agent: Get "http://127.0.0.1:')
