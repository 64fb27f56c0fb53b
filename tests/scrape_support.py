"""Real processes to scrape: a ``wanfed agent`` (one bootstrapped server) and a ``wanfed gateway``
(routes file, admin API) on 127.0.0.1, plus a parser of the Prometheus text format."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netutil import free_port, wait_for_lines
from twistd_support import killed_if_left

from wanfedtx.cli.demo import poll_until

BIN = Path(sys.executable).parent
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def families(text: str) -> dict[str, list[tuple[str, str]]]:
    """Metric name -> ``(labels, value)`` samples; names with only a ``# TYPE`` line map to [].
    Summary samples (``_sum``/``_count``) also count under their family name. Every line must
    be a comment or a well-formed sample."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            out.setdefault(name, [])
            if kind == "summary":  # a timer with no sample yet still exports these
                out.setdefault(name + "_sum", [])
                out.setdefault(name + "_count", [])
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        float(value)  # NaN, +Inf and Go's float forms all parse
        out.setdefault(name, []).append((labels, value))
        for suffix in ("_sum", "_count"):
            if name.endswith(suffix):
                out.setdefault(name[: -len(suffix)], []).append((labels, value))
    return out


@contextmanager
def agent(tmp_path: Path, extra_hcl: str = "") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A bootstrapped one-server ``wanfed agent`` (stdout and stderr piped); yields it and its
    HTTP port once it has a leader. Killed if still running when the block ends."""
    port = free_port()
    (tmp_path / "a.hcl").write_text(
        'bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\nserver = true\n'
        'bootstrap_expect = 1\nnode_name = "scraped"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f"ports {{\n  http = {port}\n  serf_lan = {free_port()}\n  serf_wan = {free_port()}\n"
        f"  server = {free_port()}\n}}\n" + extra_hcl
    )
    proc = subprocess.Popen(
        [str(BIN / "wanfed"), "agent", "-config-file", str(tmp_path / "a.hcl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    with killed_if_left(proc):

        def leader() -> bool:
            try:
                return bool(json.loads(get(f"http://127.0.0.1:{port}/v1/status/leader")))
            except (OSError, ValueError):
                return False

        if not poll_until(leader, 60):
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the agent got no leader:\n{out}\n{err}")
        yield proc, port


@contextmanager
def gateway(
    tmp_path: Path, upstream_port: int
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """``wanfed gateway`` with a routes file of two clusters (``up``: a healthy endpoint at
    ``upstream_port`` and a critical one; ``down``: one critical endpoint), SNI ``up.test`` and
    ``down.test``; yields it, its admin port and its relay port."""
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({
        "clusters": [{"name": "up", "endpoints": [
                         {"address": "127.0.0.1", "port": upstream_port},
                         {"address": "127.0.0.1", "port": 1, "health": "UNHEALTHY"}]},
                     {"name": "down", "endpoints": [
                         {"address": "127.0.0.1", "port": 1, "health": "UNHEALTHY"}]}],
        "filter_chains": [{"server_names": ["up.test"], "cluster": "up", "stat_prefix": "up"},
                          {"server_names": ["down.test"], "cluster": "down",
                           "stat_prefix": "down"}],
    }))
    proc = subprocess.Popen(
        [str(BIN / "wanfed"), "gateway", "-address", "127.0.0.1:0", "-admin-bind",
         "127.0.0.1:0", "-routes", str(routes), "-reload-interval", "0", "-log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    with killed_if_left(proc):  # type: ignore[arg-type]
        (listening, admin_line), _ = wait_for_lines(
            proc, proc.stderr, r"gateway listening on 127\.0\.0\.1:(\d+) ",
            r"admin address: 127\.0\.0\.1:(\d+)$",
        )
        yield proc, int(admin_line.group(1)), int(listening.group(1))


def client_hello(server_name: str) -> bytes:
    """A real TLS ClientHello with SNI ``server_name`` (from Python's ``ssl``)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def connect_through(port: int, server_name: str) -> bytes:
    """Open a connection to the gateway, send a ClientHello for ``server_name`` and return what
    comes back before the gateway or the upstream closes (or 2 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(client_hello(server_name))
        s.settimeout(2)
        try:
            return s.recv(1)
        except OSError:
            return b""
