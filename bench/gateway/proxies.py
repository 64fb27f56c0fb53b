"""The proxies ``run.py`` compares, started alike: haproxy, nginx and ``wanfed gateway``.

Each is pinned to the proxy core and run as the same user (``RUN_AS``, set by ``run.py``), and
its CPU time is read from ``/proc/<pid>/task/*/schedstat`` (``cpu_seconds``). ``ROOT`` is the
checkout whose ``wanfedtx`` the gateway runs (``cpuconn.py`` points it at other checkouts).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import SHAPED_SNI, SINK_SNI, SNI

ROOT = Path(__file__).resolve().parents[2]
PIPE_SIZE = 1 << 20  # the gateway's default pipe size (RelaySettings.pipe_size)


# ------------------------------------------------------------------------------------------
# proxies


def cpu_seconds(pid: int) -> float:
    """CPU time of pid (all threads) and its direct children (nginx workers), in seconds, from
    /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU)."""
    pids = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(p.name))
    total = 0
    for q in pids:
        try:
            tasks = os.listdir(f"/proc/{q}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                total += int(Path(f"/proc/{q}/task/{t}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


RUN_AS: list[str] = []  # set in main(): the same user for every proxy


def as_user(user: str) -> list[str]:
    """The prefix that runs a proxy as ``user`` (empty: the invoking user)."""
    if not user or os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        raise SystemExit("running as root: setpriv is needed to run the proxies as --user")
    import grp
    import pwd

    pw = pwd.getpwnam(user)
    group = grp.getgrgid(pw.pw_gid).gr_name
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups"]


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)]


HAPROXY_SPLICE = {
    "haproxy": "",
    "haproxy-splice-auto": "    option splice-auto",
    "haproxy-splice": "    option splice-request\n    option splice-response",
}


def start_haproxy(
    tmp: Path, port: int, backend: int, sink: int, shaped: int, cpu: int, name: str, pipe: int
) -> subprocess.Popen[bytes]:
    cfg = tmp / f"haproxy-{port}.cfg"
    tune = f"    tune.pipesize {pipe}" if name == "haproxy-splice" else ""
    cfg.write_text(f"""
global
    maxconn 4096
    nbthread 1
{tune}
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
{HAPROXY_SPLICE[name]}
frontend fe
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend be_pri if {{ req.ssl_sni -i {SNI} }}
    use_backend be_sink if {{ req.ssl_sni -i {SINK_SNI} }}
    use_backend be_shaped if {{ req.ssl_sni -i {SHAPED_SNI} }}
backend be_pri
    server s1 127.0.0.1:{backend}
backend be_sink
    server s1 127.0.0.1:{sink}
backend be_shaped
    server s1 127.0.0.1:{shaped}
""")
    return subprocess.Popen([*pinned(cpu), *RUN_AS, "haproxy", "-db", "-f", str(cfg)])


def start_nginx(
    tmp: Path, port: int, backend: int, sink: int, shaped: int, cpu: int
) -> subprocess.Popen[bytes]:
    d = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp))
    os.chmod(d, 0o777)
    cfg = d / "nginx.conf"
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    load = f"load_module {module};" if Path(module).exists() else ""
    cfg.write_text(f"""
{load}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
stream {{
    map $ssl_preread_server_name $up {{
        {SNI} 127.0.0.1:{backend};
        {SINK_SNI} 127.0.0.1:{sink};
        {SHAPED_SNI} 127.0.0.1:{shaped};
        default 127.0.0.1:1;
    }}
    server {{
        listen 127.0.0.1:{port};
        ssl_preread on;
        proxy_pass $up;
        proxy_connect_timeout 5s;
    }}
}}
""")
    return subprocess.Popen(
        [
            *pinned(cpu),
            *RUN_AS,
            "nginx",
            "-p",
            str(d),
            "-e",
            str(d / "error.log"),
            "-c",
            str(cfg),
        ]
    )


def start_wanfed(
    tmp: Path,
    port: int,
    backend: int,
    sink: int,
    shaped: int,
    cpu: int,
    flags: list[str],
    pipe: int,
) -> subprocess.Popen[bytes]:
    routes = tmp / f"routes-{port}.json"
    routes.write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": SNI, "endpoints": [{"address": "127.0.0.1", "port": backend}]},
                    {
                        "name": f"{SINK_SNI}",
                        "endpoints": [{"address": "127.0.0.1", "port": sink}],
                    },
                    {
                        "name": SHAPED_SNI,
                        "endpoints": [{"address": "127.0.0.1", "port": shaped}],
                    },
                ],
                "filter_chains": [
                    {
                        "server_names": [SNI],
                        "cluster": SNI,
                        "stat_prefix": "mesh_gateway_local_server_default_primary_tcp",
                    },
                    {"sni_cluster": True, "stat_prefix": "mesh_gateway_local_default_tcp"},
                ],
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [
            *pinned(cpu),
            *RUN_AS,
            sys.executable,
            "-m",
            "wanfedtx.cli.main",
            "gateway",
            "-address",
            f"127.0.0.1:{port}",
            "-routes",
            str(routes),
            "-log-level",
            "warn",
            "-pipe-size",
            str(pipe),
            *flags,
        ],
        env=env,
        cwd=str(tmp),
    )


# wanfed targets: name -> flags (the default row passes none)
WANFED = {
    "wanfed-loop": ["-data-path", "loop", "-workers", "1"],
    "wanfed-loop-python": ["-data-path", "loop", "-workers", "1", "-loop-relay", "python"],
    "wanfed-default": [],
    "wanfed-twisted": ["-data-path", "twisted"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port in a benchmark harness, not a test
    raise RuntimeError(f"nothing listens on {port}")
