"""KV over HTTP against the real agent: PUT/s and GET/s on one server and on three, and N
blocking watchers on one key (memory per watcher, wake-up latency after one write).

The servers are real ``wanfed agent`` processes (``python -m wanfedtx.cli.main agent``, what the
``wanfed`` console script runs), each with its own data dir and its log in a file:

* one server: ``server = true``, ``bootstrap_expect = 1``, HTTP/RPC/serf on free 127.0.0.1 ports;
* three servers: 127.0.0.1, 127.0.0.2 and 127.0.0.3 with the same ports (join addresses carry no
  port), ``bootstrap_expect = 3``, ``retry_join`` listing all three; the harness polls
  ``/v1/status/leader`` on all three until they name the same leader.

Every config sets ``performance { raft_multiplier = 1 }`` (Consul's production advice; it only
shortens raft timers) and ``log_level = "info"``: the agent's access log (``Request finished``) is
a debug-level event, so it is emitted per request but filtered out, never written.

The load comes from raw-socket HTTP/1.1 clients in their own processes (bench/http/rawclient.py:
epoll, keep-alive, one request in flight per connection), never from the server's interpreter:

1. Load rows: ``--requests`` PUTs of a ``--value-size`` byte value over ``--concurrency``
   connections (split over ``--client-procs`` processes) to keys ``bench/<i % --keys>``, then as
   many GETs. On three servers: PUT to the leader, PUT to the followers (forwarded to the leader),
   default-mode GET on the leader and on the followers (forwarded), ``?stale`` GET spread over all
   three. Each row: requests/s (all requests / wall time from the first client's start to the
   last one's end), p50/p99 latency, CPU % of every server process and of the clients during
   the row, and "other": what the rest of the (shared) machine used meanwhile, from /proc/stat.
2. Watchers (one server): a watcher process opens ``--watchers`` connections (batches of
   ``--connect-batch``; the next batch starts once the server has accepted the previous ones)
   each sending ``GET /v1/kv/watched?index=<current>&wait=300s``. Once the
   server holds that many more open fds (``/proc/<pid>/fd``) and its VmRSS has settled, (RSS growth)
   / N is the memory per watcher (user-space memory of the server process; kernel socket buffers are
   not in RSS). Then the watcher process sends one PUT on its own socket (t0 just before the send)
   and waits until every watcher has its complete response: first/median/p99/all wake-up times.
   Every answer must be 200 with the new value and an ``X-Consul-Index`` above the watched index;
   any other answer, an early answer or a missing one fails the run (exit 1).

Usage: python bench/http/kv_bench.py [--servers 1,3] [--requests 20000] [--concurrency 32]
       [--client-procs 1] [--watchers 10000] [--quick] [--tmp /var/tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RAWCLIENT = HERE / "rawclient.py"
TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run or a check failed; the message says which."""


# -- process facts ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores; /proc/stat minus idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK


def wait_until(what: str, check: Callable[[], bool], timeout: float, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


# -- the servers --------------------------------------------------------------------------------


def free_ports(ips: list[str], count: int) -> list[int]:
    """``count`` port numbers free for TCP and UDP on every address in ``ips``."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((ips[0], 0))
            port = int(probe.getsockname()[1])
        if port in ports:
            continue
        ok = True
        for ip in ips:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind((ip, port))
                    except OSError:
                        ok = False
        if ok:
            ports.append(port)
    return ports


class Server:
    """One ``wanfed agent`` process."""

    def __init__(
        self, name: str, ip: str, ports: dict[str, int], root: Path, extra: list[str]
    ) -> None:
        self.name = name
        self.ip = ip
        self.http_port = ports["http"]
        self.server_port = ports["server"]
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "agent.log"
        config = [
            'datacenter = "dc1"',
            f'node_name = "{name}"',
            "server = true",
            f'bind_addr = "{ip}"',
            f'client_addr = "{ip}"',
            f'data_dir = "{self.dir / "data"}"',
            'log_level = "info"',
            "performance { raft_multiplier = 1 }",
            # Thousands of watchers come from one address: no per-client connection limit.
            "limits { http_max_conns_per_client = 0 }",
            f"ports {{ http = {ports['http']} server = {ports['server']} dns = -1 "
            f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
            *extra,
        ]
        self.config_path = self.dir / "agent.hcl"
        self.config_path.write_text("\n".join(config) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{self.ip}:{self.http_port}"

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wanfedtx.cli.main", "agent", "-config-file",
             str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BenchError(
                f"agent {self.name} exited with {self.proc.returncode}; its log "
                f"({self.log_path}) ends with:\n" + "\n".join(tail)
            )

    def leader(self) -> str:
        self.check_alive()
        try:
            status, body, _ = http(self.base + "/v1/status/leader")
        except OSError:
            return ""
        return json.loads(body) if status == 200 else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()


def http(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def start_cluster(count: int, root: Path) -> list[Server]:
    ips = [f"127.0.0.{i + 1}" for i in range(count)]
    http_p, server_p, lan_p, wan_p = free_ports(ips, 4)
    ports = {"http": http_p, "server": server_p, "serf_lan": lan_p, "serf_wan": wan_p}
    if count == 1:
        extra = ["bootstrap_expect = 1"]
    else:
        joins = ", ".join(f'"{ip}"' for ip in ips)
        extra = [f"bootstrap_expect = {count}", f"retry_join = [{joins}]",
                 'retry_interval = "1s"']
    servers = [Server(f"s{i + 1}", ip, ports, root / f"{count}-servers", extra)
               for i, ip in enumerate(ips)]
    for s in servers:
        s.start()
    try:
        def one_leader() -> bool:
            leaders = {s.leader() for s in servers}
            return len(leaders) == 1 and "" not in leaders

        wait_until(f"one leader known to all {count} servers", one_leader, 90, 0.2)
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def leader_of(servers: list[Server]) -> Server:
    addr = servers[0].leader()
    for s in servers:
        if addr == f"{s.ip}:{s.server_port}":
            return s
    raise BenchError(f"the leader {addr!r} is none of the servers")


# -- load rows ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def load_row(
    args: argparse.Namespace,
    label: str,
    method: str,
    targets: list[Server],
    everyone: list[Server],
    query: str = "",
) -> dict[str, Any]:
    procs = []
    conc = args.concurrency
    for p in range(args.client_procs):
        share = conc // args.client_procs + (1 if p < conc % args.client_procs else 0)
        if share == 0:
            continue
        # Connections are spread over the targets across processes, too.
        mine = [targets[(p + k) % len(targets)] for k in range(min(share, len(targets)))]
        cfg = {
            "targets": [[s.ip, s.http_port] for s in mine],
            "method": method,
            "query": query,
            "prefix": "bench/",
            "keys": args.keys,
            "value_size": args.value_size,
            "requests": args.requests,
            "offset": p,
            "step": args.client_procs,
            "concurrency": share,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(RAWCLIENT), "load", json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if json.loads(line or "{}").get("event") != "ready":
            raise BenchError(f"load client did not start: {line!r}")
    cpu0 = {s.name: cpu_seconds(s.pid) for s in everyone}
    busy0 = machine_busy_seconds()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        results.append(json.loads(out.strip().splitlines()[-1]))
    cpu1 = {s.name: cpu_seconds(s.pid) for s in everyone}
    busy1 = machine_busy_seconds()
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    lat = sorted(x / 1000 for r in results for x in r["latencies_us"])
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    errors = [e for r in results for e in r["errors"]]
    ok = statuses.get("200", 0)
    wall = end - start
    row = {
        "label": label,
        "servers": len(everyone),
        "requests": len(lat),
        "ok": ok,
        "rate": len(lat) / wall if wall > 0 else 0.0,
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "statuses": statuses,
        "errors": errors,
        "server_cpu": {n: 100 * (cpu1[n] - cpu0[n]) / wall for n in cpu0},
        "client_cpu": 100 * sum(r["cpu_s"] for r in results) / wall,
    }
    # Everything else the machine ran meanwhile (other jobs on the shared cores, this harness).
    ours = sum(cpu1[n] - cpu0[n] for n in cpu0) + sum(r["cpu_s"] for r in results)
    row["other_cpu"] = max(0.0, 100 * ((busy1 - busy0) - ours) / wall)
    cpu = " ".join(f"{n} {v:.0f}%" for n, v in row["server_cpu"].items())
    print(
        f"servers={row['servers']} {label:<34} {row['requests']:>6} req  "
        f"{row['rate']:>6.0f} req/s  p50 {row['p50']:6.2f} ms  p99 {row['p99']:6.2f} ms  "
        f"non-200 {row['requests'] - ok}  cpu: {cpu}, clients {row['client_cpu']:.0f}%, "
        f"other {row['other_cpu']:.0f}%",
        flush=True,
    )
    if errors or ok != args.requests:
        for e in errors[:5]:
            print(f"  error: {e}", flush=True)
        raise BenchError(f"{label}: {ok} of {args.requests} requests answered 200")
    return row


def load_rows(args: argparse.Namespace, servers: list[Server]) -> list[dict[str, Any]]:
    leader = leader_of(servers)
    if len(servers) == 1:
        tag = f"{leader.name} (leader)"
        return [
            load_row(args, f"PUT -> {tag}", "PUT", [leader], servers),
            load_row(args, f"GET -> {tag}", "GET", [leader], servers),
        ]
    followers = [s for s in servers if s is not leader]
    f_tag = ",".join(s.name for s in followers) + " (followers)"
    l_tag = f"{leader.name} (leader)"
    return [
        load_row(args, f"PUT -> {l_tag}", "PUT", [leader], servers),
        load_row(args, f"PUT -> {f_tag}", "PUT", followers, servers),
        load_row(args, f"GET -> {l_tag}", "GET", [leader], servers),
        load_row(args, f"GET -> {f_tag}", "GET", followers, servers),
        load_row(args, "GET ?stale -> " + ",".join(s.name for s in servers) + " (all)",
                 "GET", servers, servers, query="?stale"),
    ]


# -- watchers -----------------------------------------------------------------------------------


def watcher_phase(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    status, _, _ = http(server.base + "/v1/kv/watched", "PUT", b"0")
    if status != 200:
        raise BenchError(f"PUT /v1/kv/watched answered {status}")
    status, _, headers = http(server.base + "/v1/kv/watched")
    if status != 200:
        raise BenchError(f"GET /v1/kv/watched answered {status}")
    index = int(headers["X-Consul-Index"])
    # Let the agent's own background work (anti-entropy, leader setup) settle first.
    time.sleep(1.0)
    base_fds = open_fds(server.pid)
    base_rss = rss_kib(server.pid)
    cfg = {
        "host": server.ip,
        "port": server.http_port,
        "path": "/v1/kv/watched",
        "index": index,
        "wait": "300s",
        "watchers": args.watchers,
        "batch": args.connect_batch,
        "put_value": "1",
        "paced": True,
    }
    proc = subprocess.Popen(
        [sys.executable, str(RAWCLIENT), "watch", json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    def accepted(count: int) -> Callable[[], bool]:
        def check() -> bool:
            server.check_alive()
            # +1: the watcher process's own keep-alive socket for the PUT
            return open_fds(server.pid) - base_fds >= count + 1

        return check

    try:
        while True:
            sent = json.loads(proc.stdout.readline() or '{"event": "none"}')
            if sent.get("event") != "batch":
                break
            wait_until(f"the server to accept {sent['sent']} watchers", accepted(sent["sent"]),
                       60, 0.005)
            proc.stdin.write("next\n")
            proc.stdin.flush()
        if sent.get("event") != "sent":
            raise BenchError(f"watcher process failed: {sent}")
        if sent["errors"]:
            raise BenchError(f"watchers could not connect: {sent['errors'][:5]}")

        wait_until(f"the server to hold {args.watchers} more connections",
                   accepted(args.watchers), 120, 0.2)
        parked_s = time.monotonic()
        samples = [rss_kib(server.pid)]
        while True:  # settled: two readings 1 s apart within 0.2% (or 64 KiB)
            time.sleep(1.0)
            samples.append(rss_kib(server.pid))
            if abs(samples[-1] - samples[-2]) <= max(64, samples[-2] // 500):
                break
            if len(samples) > 60:
                raise BenchError(f"server RSS did not settle: {samples[-5:]}")
        final_rss = samples[-1]
        fds = open_fds(server.pid) - base_fds
        per_watcher = (final_rss - base_rss) / args.watchers
        print(
            f"watchers: {sent['watchers']} sent in {sent['seconds']:.1f} s "
            f"(slowest batch of {args.connect_batch}: {sent['slowest_batch_s'] * 1000:.0f} ms); "
            f"server holds +{fds} fds; RSS settled after {time.monotonic() - parked_s:.0f} s",
            flush=True,
        )
        print(
            f"memory per watcher: {per_watcher:.2f} KiB (server RSS {base_rss} KiB -> "
            f"{final_rss} KiB, +{final_rss - base_rss} KiB for {args.watchers} watchers)",
            flush=True,
        )
        cpu0 = cpu_seconds(server.pid)
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        proc.stdin.write("put\n")
        proc.stdin.flush()
        out = proc.stdout.readline()  # the watcher process is done, its sockets still open
        wall = time.monotonic() - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
        busy = machine_busy_seconds() - busy0
        proc.stdin.write("bye\n")
        proc.stdin.flush()
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    woken = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    if woken.get("event") != "woken":
        raise BenchError(f"watcher process failed after the write: {woken}")
    wake = woken["wake_ms"]
    if wake:
        print(
            f"wake-up after one PUT: first {wake[0]:.0f} ms, median {statistics.median(wake):.0f} "
            f"ms, p99 {percentile(wake, 0.99):.0f} ms, all {wake[-1]:.0f} ms "
            f"(PUT answered {woken['put_status']} in {woken['put_ms'] or 0:.0f} ms)",
            flush=True,
        )
    print(
        f"wake-up phase: server CPU {server_cpu:.2f} s ({server_cpu / args.watchers * 1e6:.0f} "
        f"µs per watcher); watcher process CPU {woken['cpu_s']:.2f} s; whole machine busy "
        f"{busy:.2f} CPU-s over {wall:.2f} s",
        flush=True,
    )
    failures = woken["failures"]
    good = woken["watchers"] - sum(failures.values())
    print(
        f"watch answers: {len(wake)} woken by the write, all with 200, the new value and "
        f"X-Consul-Index > {woken['index']}: {good}/{woken['watchers']}; failures: "
        f"{failures or 'none'}",
        flush=True,
    )
    if failures or woken["errors"] or woken["put_status"] != 200 or len(wake) != args.watchers:
        for e in woken["errors"][:5]:
            print(f"  error: {e}", flush=True)
        raise BenchError("some watchers did not get a correct answer to the write")
    return {
        "watchers": args.watchers,
        "base_rss": base_rss,
        "final_rss": final_rss,
        "per_watcher_kib": per_watcher,
        "wake_first": wake[0],
        "wake_median": statistics.median(wake),
        "wake_p99": percentile(wake, 0.99),
        "wake_all": wake[-1],
        "wake_server_cpu_s": server_cpu,
    }


# -- main ---------------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]], watch: dict[str, Any] | None) -> str:
    lines = [
        "| servers | row (server hit) | requests | req/s | p50 ms | p99 ms | server CPU % "
        "| client CPU % | other CPU % |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        cpu = ", ".join(f"{n} {v:.0f}" for n, v in r["server_cpu"].items())
        lines.append(
            f"| {r['servers']} | {r['label']} | {r['requests']} | {r['rate']:.0f} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {cpu} | {r['client_cpu']:.0f} | "
            f"{r['other_cpu']:.0f} |"
        )
    if watch:
        lines += [
            "",
            "| watchers | RSS before KiB | RSS after KiB | KiB per watcher | first ms | median ms "
            "| p99 ms | all ms | server CPU s while waking |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {watch['watchers']} | {watch['base_rss']} | {watch['final_rss']} | "
            f"{watch['per_watcher_kib']:.2f} | {watch['wake_first']:.0f} | "
            f"{watch['wake_median']:.0f} | {watch['wake_p99']:.0f} | {watch['wake_all']:.0f} | "
            f"{watch['wake_server_cpu_s']:.2f} |",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--servers", default="1,3", help="topologies to run (default 1,3)")
    parser.add_argument("--requests", type=int, default=None,
                        help="per load row (default 20000; 500 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections per load row")
    parser.add_argument("--client-procs", type=int, default=1, help="load client processes")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--watchers", type=int, default=None,
                        help="default 10000 (200 with --quick); 0 skips the watcher phase")
    parser.add_argument("--connect-batch", type=int, default=50,
                        help="watcher connections opened at once (the agent's listen backlog "
                        "is Twisted's default, 50)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 500 requests, 200 watchers (unless given)")
    parser.add_argument("--tmp", default="/var/tmp", help="where the data dirs go")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and agent logs")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 500 if args.quick else 20000
    if args.watchers is None:
        args.watchers = 200 if args.quick else 10000
    try:
        args.topologies = [int(x) for x in args.servers.split(",") if x]
    except ValueError:
        parser.error("--servers takes a comma-separated list of 1 and 3")
    if not args.topologies or any(t not in (1, 3) for t in args.topologies):
        parser.error("--servers takes a comma-separated list of 1 and 3")
    if args.client_procs < 1 or args.concurrency < args.client_procs:
        parser.error("--client-procs must be between 1 and --concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.watchers + 1024
    if soft != resource.RLIM_INFINITY and soft < need:
        # Raised here so the agent processes inherit it.
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < args.watchers + 256:
        print(f"error: open-files limit {soft} (hard {hard}) is too low for "
              f"{args.watchers} watchers", file=sys.stderr)
        return 1
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    root = Path(tempfile.mkdtemp(prefix="wanfed-httpbench-", dir=args.tmp))
    print(f"data dirs and agent logs under {root}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    print(
        f"load: {args.requests} requests per row, {args.concurrency} connections, "
        f"{args.client_procs} client process(es), {args.value_size}-byte values, "
        f"{args.keys} keys; watchers: {args.watchers}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    watch: dict[str, Any] | None = None
    failed = False
    try:
        for count in args.topologies:
            t = time.monotonic()
            servers = start_cluster(count, root)
            try:
                leader = leader_of(servers)
                print(
                    f"servers={count}: leader {leader.name} ({leader.ip}) after "
                    f"{time.monotonic() - t:.1f} s; agent logs in {root / f'{count}-servers'}",
                    flush=True,
                )
                rows += load_rows(args, servers)
                if count == 1 and args.watchers:
                    watch = watcher_phase(args, servers[0])
            finally:
                for s in servers:
                    s.stop()
    except BenchError as e:
        print(f"error: {e}", flush=True)
        failed = True
    print()
    print(markdown(rows, watch))
    if not args.keep and not failed:
        shutil.rmtree(root, ignore_errors=True)
    elif failed:
        print(f"(kept {root} for the agent logs)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
