"""Benchmark the mesh gateway beside haproxy (req.ssl_sni) and nginx (ssl_preread), one run.

    .venv/bin/python bench/gateway/run.py [--seconds 2] [--rounds 3] [--json out.json]

Every target gets the same TLS backend process and the same client code (this file): the direct
path (no proxy), haproxy, nginx, and `wanfed gateway` with each data path (splice, twisted). All
proxies route the SNI ``pri.server.primary.consul`` to the backend without terminating TLS. haproxy
and nginx run unprivileged (as ``nobody``) with configs in a temp dir on 127.0.0.1 high ports.

Measured per target: bulk client->backend throughput over TLS on 1 and 32 connections, proxy CPU
seconds per GiB relayed (utime+stime from /proc/<pid>/stat of the proxy and its children, over
the bulk runs), round-trip time of 64-byte messages on one connection (p50/p99; "added" is minus
the direct path), and new TLS connections per second (handshake + 1-byte echo + close).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SNI = "pri.server.primary.consul"
ROOT = Path(__file__).resolve().parents[2]
CHUNK = 256 * 1024


# ------------------------------------------------------------------------------------------
# certificates


def make_certs(d: Path) -> None:
    """The project's agent CA and a server cert for node ``pri`` in DC ``primary``."""
    from wanfedtx.tls.certs import create_ca, create_cert

    ca = create_ca()
    cert = create_cert(ca, "server", dc="primary", node="pri")
    (d / "ca.pem").write_bytes(ca.cert_pem)
    (d / "server.pem").write_bytes(cert.cert_pem)
    (d / "server-key.pem").write_bytes(cert.key_pem)


# ------------------------------------------------------------------------------------------
# backend (a separate process): thread per connection, first byte picks the mode


def read_exact(s: ssl.SSLSocket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = s.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def backend_main(port: int, certdir: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certdir / "server.pem", certdir / "server-key.pem")
    ls = socket.create_server(("127.0.0.1", port), backlog=1024)

    def serve(raw: socket.socket) -> None:
        try:
            with ctx.wrap_socket(raw, server_side=True) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                mode = s.recv(1)
                if mode == b"S":  # sink: frames of <u32 length><bytes>; length 0 ends
                    n = 0
                    buf = bytearray(CHUNK + 4)
                    view = memoryview(buf)
                    while True:
                        if not read_exact(s, view[:4]):
                            break
                        size = struct.unpack("!I", view[:4])[0]
                        if size == 0:
                            break
                        if not read_exact(s, view[:size]):
                            break
                        n += size
                    s.sendall(struct.pack("!Q", n))
                elif mode == b"E":  # echo
                    while True:
                        b = s.recv(65536)
                        if not b:
                            break
                        s.sendall(b)
        except (OSError, ssl.SSLError):
            pass

    print("ready", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# ------------------------------------------------------------------------------------------
# client measurements


def client_ctx(certdir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certdir / "ca.pem")
    return ctx


def connect(addr: tuple[str, int], ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(addr, timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=SNI)


def bulk(addr: tuple[str, int], ctx: ssl.SSLContext, conns: int, seconds: float) -> float:
    """Bytes/s delivered to the backend, all connections together."""
    frame = struct.pack("!I", CHUNK) + os.urandom(CHUNK)
    totals: list[int] = []
    barrier = threading.Barrier(conns + 1)
    lock = threading.Lock()

    def one() -> None:
        s = connect(addr, ctx)
        s.sendall(b"S")
        barrier.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.sendall(frame)
        s.sendall(struct.pack("!I", 0))
        got = bytearray(8)
        ok = read_exact(s, memoryview(got))
        s.close()
        with lock:
            totals.append(struct.unpack("!Q", got)[0] if ok else 0)

    threads = [threading.Thread(target=one) for _ in range(conns)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return sum(totals) / (time.monotonic() - t0)


def rtt(addr: tuple[str, int], ctx: ssl.SSLContext, n: int) -> list[float]:
    s = connect(addr, ctx)
    s.sendall(b"E")
    msg = b"m" * 64
    out = []
    for _ in range(50):  # warm up
        s.sendall(msg)
        s.recv(64)
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        out.append(time.perf_counter() - t0)
    s.close()
    return out


def conn_rate(addr: tuple[str, int], ctx: ssl.SSLContext, workers: int, seconds: float) -> float:
    count = [0] * workers
    end = time.monotonic() + seconds

    def one(i: int) -> None:
        while time.monotonic() < end:
            s = connect(addr, ctx)
            s.sendall(b"Ex")
            s.recv(1)
            s.close()
            count[i] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.monotonic() - t0)


# ------------------------------------------------------------------------------------------
# proxies


def cpu_seconds(pid: int) -> float:
    """utime+stime of pid and its direct children (nginx workers), in seconds."""
    tck = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(p.name))
    total = 0.0
    for q in pids:
        try:
            fields = Path(f"/proc/{q}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tck
    return total


def as_nobody() -> list[str]:
    if os.geteuid() == 0 and shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return []


def start_haproxy(tmp: Path, port: int, backend: int) -> subprocess.Popen[bytes]:
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(f"""
global
    maxconn 8192
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend fe
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend be_pri if {{ req.ssl_sni -i {SNI} }}
backend be_pri
    server s1 127.0.0.1:{backend}
""")
    return subprocess.Popen([*as_nobody(), "haproxy", "-db", "-f", str(cfg)])


def start_nginx(tmp: Path, port: int, backend: int) -> subprocess.Popen[bytes]:
    d = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp))
    os.chmod(d, 0o777)
    cfg = d / "nginx.conf"
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    load = f"load_module {module};" if Path(module).exists() else ""
    cfg.write_text(f"""
{load}
daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
stream {{
    map $ssl_preread_server_name $up {{
        {SNI} 127.0.0.1:{backend};
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
        [*as_nobody(), "nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(cfg)]
    )


def start_wanfed(
    tmp: Path, port: int, backend: int, data_path: str, pipe_size: int | None = None
) -> subprocess.Popen[bytes]:
    routes = tmp / f"routes-{data_path}.json"
    routes.write_text(
        json.dumps(
            {
                "clusters": [
                    {
                        "name": "pri.server.primary.consul",
                        "endpoints": [{"address": "127.0.0.1", "port": backend}],
                    }
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
    exe = ROOT / ".venv" / "bin" / "wanfed"
    return subprocess.Popen(
        [
            str(exe),
            "gateway",
            "-address",
            f"127.0.0.1:{port}",
            "-routes",
            str(routes),
            "-data-path",
            "loop" if data_path == "loop2" else data_path,
            "-workers",
            "2" if data_path == "loop2" else "1",
            "-log-level",
            "warn",
            *(["-pipe-size", str(pipe_size)] if pipe_size else []),
        ]
    )


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


# ------------------------------------------------------------------------------------------


def measure(
    addr: tuple[str, int], ctx: ssl.SSLContext, pid: int | None, seconds: float, rtt_n: int
) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid) if pid else 0.0
    t1 = bulk(addr, ctx, 1, seconds)
    t32 = bulk(addr, ctx, 32, seconds)
    cpu1 = cpu_seconds(pid) if pid else 0.0
    relayed = (t1 + t32) * seconds  # approximately the bytes moved during the two bulk runs
    r = rtt(addr, ctx, rtt_n)
    cpu2 = cpu_seconds(pid) if pid else 0.0
    rate = conn_rate(addr, ctx, 8, seconds)
    cpu3 = cpu_seconds(pid) if pid else 0.0
    q = statistics.quantiles(r, n=100)
    return {
        "bulk1_MBps": t1 / 1e6,
        "bulk32_MBps": t32 / 1e6,
        "cpu_s_per_GiB": ((cpu1 - cpu0) / (relayed / 2**30)) if pid else None,
        "rtt_p50_us": statistics.median(r) * 1e6,
        "rtt_p99_us": q[98] * 1e6,
        "conns_per_s": rate,
        "cpu_us_per_conn": ((cpu3 - cpu2) / (rate * seconds) * 1e6) if pid else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="medians over this many rounds")
    ap.add_argument("--rtt", type=int, default=2000)
    ap.add_argument(
        "--only",
        default="direct,haproxy,nginx,wanfed-loop,wanfed-loop2,wanfed-splice,wanfed-twisted",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--backend", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--certdir", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.backend is not None:
        backend_main(a.backend, Path(a.certdir))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="wanfed-gw-bench-"))
    os.chmod(tmp, 0o755)
    make_certs(tmp)
    bport = free_port()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--backend", str(bport), "--certdir", str(tmp)],
        stdout=subprocess.PIPE,
    )
    assert backend.stdout is not None
    backend.stdout.readline()
    wait_port(bport)
    ctx = client_ctx(tmp)
    names = a.only.split(",")
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for r in range(a.rounds):
            # rotate the order each round so no target always runs last on a busy machine
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                rounds[name].append(run_target(name, tmp, bport, ctx, a))
    finally:
        backend.kill()
        backend.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    results = {n: median_of(rounds[n]) for n in names}
    report(results)
    if a.json:
        Path(a.json).write_text(json.dumps({"median": results, "rounds": rounds}, indent=2))
    return 0


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if r[k] is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


def run_target(
    name: str, tmp: Path, bport: int, ctx: ssl.SSLContext, a: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    if name == "direct":
        port = bport
    elif name == "haproxy":
        proc = start_haproxy(tmp, port, bport)
    elif name == "nginx":
        proc = start_nginx(tmp, port, bport)
    elif name.startswith("wanfed-"):
        # wanfed-<path>[-<pipe bytes>]
        parts = name.split("-")
        proc = start_wanfed(tmp, port, bport, parts[1], int(parts[2]) if len(parts) > 2 else None)
    else:
        raise SystemExit(f"unknown target {name}")
    try:
        wait_port(port, proc)
        print(f"== {name}", file=sys.stderr, flush=True)
        res = measure(("127.0.0.1", port), ctx, proc.pid if proc else None, a.seconds, a.rtt)
        print(json.dumps(res), file=sys.stderr, flush=True)
        return res
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM if not name == "nginx" else signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def report(results: dict[str, Any]) -> None:
    direct = results.get("direct")
    hap = results.get("haproxy")
    print(
        "| target | bulk 1 conn MB/s | bulk 32 conns MB/s | CPU s/GiB | RTT p50 us | RTT p99 us"
        " | added p50 us | added p99 us | new TLS conns/s | proxy CPU us/conn |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        add50 = r["rtt_p50_us"] - direct["rtt_p50_us"] if direct else float("nan")
        add99 = r["rtt_p99_us"] - direct["rtt_p99_us"] if direct else float("nan")
        cpu = "-" if r["cpu_s_per_GiB"] is None else f"{r['cpu_s_per_GiB']:.2f}"
        print(
            f"| {name} | {r['bulk1_MBps']:.0f} | {r['bulk32_MBps']:.0f} | {cpu} | "
            f"{r['rtt_p50_us']:.0f} | {r['rtt_p99_us']:.0f} | {add50:.0f} | {add99:.0f} | "
            f"{r['conns_per_s']:.0f} | "
            f"{'-' if r['cpu_us_per_conn'] is None else format(r['cpu_us_per_conn'], '.0f')} |"
        )
    if hap and direct:
        print()
        print(
            "| wanfed vs haproxy | throughput 1 | throughput 32 | CPU/GiB | added RTT p50 |"
            " conns/s |"
        )
        print("|---|---|---|---|---|---|")
        hadd = hap["rtt_p50_us"] - direct["rtt_p50_us"]
        for name, r in results.items():
            if not name.startswith("wanfed"):
                continue
            radd = r["rtt_p50_us"] - direct["rtt_p50_us"]
            print(
                f"| {name} | {r['bulk1_MBps'] / hap['bulk1_MBps']:.2f}x | "
                f"{r['bulk32_MBps'] / hap['bulk32_MBps']:.2f}x | "
                f"{r['cpu_s_per_GiB'] / hap['cpu_s_per_GiB']:.2f}x | "
                f"{radd / hadd if hadd > 0 else float('nan'):.2f}x | "
                f"{r['conns_per_s'] / hap['conns_per_s']:.2f}x |"
            )


if __name__ == "__main__":
    sys.exit(main())
