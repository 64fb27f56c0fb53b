"""Replicated durable KV writes through each system's HTTP API: three wanfedtx servers
(``PUT /v1/kv/<key>``) against three etcd 3.4 members (its v3 JSON gateway, ``POST /v3/kv/put``
with base64 key and value), the same load generator (wrk, closed loop, one request in flight
per connection), the same value size, the same keys, the same user, no CPU pinning for either.

    python bench/http/kv_vs_etcd.py [--connections 1,16,256] [--duration 10] [--reps 1]
        [--value-size 128] [--systems wanfed,etcd] [--profile DIR] [--tmp /var/tmp]

Run time: about (2 clusters x reps x len(connections) x (duration + 2 s warm-up)) + ~15 s of
cluster start-ups; the defaults take about 1 min 30 s.

* wanfedtx: real ``wanfed agent`` processes (bench/http/kv_bench.py's ``Server``: 127.0.0.1/2/3,
  ``bootstrap_expect = 3``, raft log fsynced on each server, ``log_level = "info"``). wrk sends
  to the leader.
* etcd: Debian's ``etcd-server`` 3.4 (``apt-get install -y etcd-server``; its packaged service
  is not used: ``etcd`` runs as this script's child, like the agents). Operator defaults: fsync
  on (no ``--unsafe-no-fsync``), ``--snapshot-count`` 100000, ``--quota-backend-bytes`` 2 GiB,
  ``--log-level error``. wrk sends to the leader (from ``/v3/maintenance/status``).

``--clients spread`` deals each row's connections over the three servers of each system
(leader first: 1 connection goes to the leader, 16 are 6/5/5, 256 are 86/85/85), one wrk per
server run side by side, as clients spread over a cluster's servers are: a follower forwards
the write to its leader (ours as a ``KVS.Apply`` RPC, etcd as a raft proposal) and answers
after the commit. The rows add up the wrk processes' requests; p50/p99 come from the union of
their 0.1 % latency quantiles.

Rows alternate between the systems (wanfed 1, etcd 1, wanfed 16, ...; both clusters stay up) so
that the shared machine's load drifts affect both alike. Each row prints writes/s, p50/p99 (wrk's
latency distribution), non-2xx answers (must be 0), and the CPU of every server process and of
wrk over the row (100 = one core). ``--profile DIR`` runs ``py-spy record`` on the wanfedtx
leader during each wanfed row and writes ``DIR/leader-c<N>.svg`` and ``.folded``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kv_bench import (  # noqa: E402  (bench script next to this one)
    BenchError,
    Server,
    cpu_seconds,
    free_ports,
    leader_of,
    machine_busy_seconds,
    start_cluster,
    wait_until,
)

ROOT = HERE.parent.parent
KEYS = 1000
T = TypeVar("T")

# wrk script: KEYS pre-built requests (one per key), cycled per thread from a thread-specific
# offset; done() prints one JSON line with the latency at every 0.1 % quantile (µs).
WRK_LUA = r"""
local keys = %(keys)d
local reqs = {}
local n = 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end
function init(args)
  local value = string.rep("v", %(value_size)d)
  for i = 0, keys - 1 do
    local key = "bench/" .. i
    local req
    if "%(system)s" == "etcd" then
      local body = '{"key":"' .. b64(key) .. '","value":"' .. b64(value) .. '"}'
      req = wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
    else
      req = wrk.format("PUT", "/v1/kv/" .. key, nil, value)
    end
    reqs[i] = req
  end
  n = offset or 0
end
function request()
  n = n + 1
  return reqs[n %% keys]
end
local b = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
function b64(data)
  return ((data:gsub('.', function(x)
    local r, byte = '', x:byte()
    for i = 8, 1, -1 do r = r .. (byte %% 2 ^ i - byte %% 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%%d%%d%%d?%%d?%%d?%%d?', function(x)
    if (#x < 6) then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({'', '==', '='})[#data %% 3 + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  local q = {}
  for i = 1, 999 do q[i] = string.format('%%d', latency:percentile(i / 10)) end
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "max_us": %%d, "q_us": [%%s]}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.max, table.concat(q, ',')))
end
"""


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return json.loads(r.read())


# -- etcd -----------------------------------------------------------------------------------


class Etcd:
    """One etcd member, a child process with its own data dir."""

    def __init__(self, i: int, peer_ports: list[int], client_ports: list[int],
                 root: Path) -> None:
        self.name = f"e{i + 1}"
        self.client = f"http://127.0.0.1:{client_ports[i]}"
        peer = f"http://127.0.0.1:{peer_ports[i]}"
        cluster = ",".join(f"e{j + 1}=http://127.0.0.1:{p}" for j, p in enumerate(peer_ports))
        self.dir = root / self.name
        self.dir.mkdir(parents=True)
        self.log = open(self.dir / "etcd.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", str(self.dir / "data"),
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--listen-client-urls", self.client, "--advertise-client-urls", self.client,
             "--initial-cluster", cluster, "--initial-cluster-state", "new",
             "--initial-cluster-token", f"bench-{os.getpid()}",
             "--log-level", "error", "--logger", "zap"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def host_port(self) -> str:
        return self.client.removeprefix("http://")

    def status(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise BenchError(f"etcd {self.name} exited with {self.proc.returncode} "
                             f"(log: {self.dir / 'etcd.log'})")
        try:
            out: dict[str, Any] = http_json(self.client + "/v3/maintenance/status", {})
        except OSError:
            return {}
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_etcd(root: Path) -> list[Etcd]:
    if shutil.which("etcd") is None:
        raise BenchError("no etcd binary: apt-get install -y etcd-server")
    ports = free_ports(["127.0.0.1"], 6)
    members = [Etcd(i, ports[:3], ports[3:], root / "etcd") for i in range(3)]

    def one_leader() -> bool:
        leaders = {m.status().get("leader") for m in members}
        return len(leaders) == 1 and None not in leaders

    try:
        wait_until("one etcd leader known to all 3 members", one_leader, 60, 0.2)
    except BaseException:
        for m in members:
            m.stop()
        raise
    return members


def etcd_leader(members: list[Etcd]) -> Etcd:
    for m in members:
        st = m.status()
        if st.get("leader") == st.get("header", {}).get("member_id"):
            return m
    raise BenchError("no etcd member says it is the leader")


# -- one row --------------------------------------------------------------------------------


def leader_first(members: list[T], leader: T) -> list[T]:
    """``members`` with ``leader`` first (the order ``split_connections`` deals in)."""
    return [leader, *(m for m in members if m is not leader)]


def split_connections(members: list[str], conns: int) -> list[tuple[str, int]]:
    """``conns`` connections dealt over ``members`` (the leader first), none left empty."""
    share = [conns // len(members) + (1 if i < conns % len(members) else 0)
             for i in range(len(members))]
    return [(m, n) for m, n in zip(members, share, strict=True) if n]


def merge_wrk(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the JSON lines of the wrk processes run side by side (one or more): counts
    summed, the rate summed, p50/p99 of the union from each process's 0.1 % quantiles (weighted
    by its requests; for one process they are its own 50th and 99th percentiles)."""
    out: dict[str, Any] = {k: sum(r[k] for r in results) for k in (
        "requests", "non2xx", "connect", "read", "write", "timeout")}
    out["duration_us"] = max(r["duration_us"] for r in results)
    out["rate"] = sum(r["requests"] / (r["duration_us"] / 1e6) for r in results)
    out["max_us"] = max(r["max_us"] for r in results)
    points = sorted((q, r["requests"] / len(r["q_us"])) for r in results for q in r["q_us"])
    total = sum(w for _, w in points)
    for name, frac in (("p50_us", 0.50), ("p99_us", 0.99)):
        acc = 0.0
        for q, w in points:
            acc += w
            if acc >= frac * total:
                out[name] = q
                break
    return out


def run_wrk(system: str, targets: list[tuple[str, int]], duration: float, value_size: int,
            procs: dict[str, int], root: Path, profile: Path | None,
            leader_pid: int) -> dict[str, Any]:
    """One measured row: a wrk per (host:port, connections) of ``targets``, all at once."""
    script = root / f"wrk-{system}.lua"
    script.write_text(WRK_LUA % {"keys": KEYS, "value_size": value_size, "system": system})
    conns = sum(c for _, c in targets)

    def cmd(target: str, c: int, secs: float) -> list[str]:
        return ["wrk", "-t", str(min(2, c)), "-c", str(c), "-d", f"{secs:g}s", "--timeout",
                "10s", "-s", str(script), f"http://{target}"]

    # warm-up: 2 s, not measured (connections, caches, the leader's first batches)
    warm = [subprocess.Popen(cmd(t, c, 2), stdout=subprocess.DEVNULL) for t, c in targets]
    if any(w.wait() for w in warm):
        raise BenchError("wrk failed during the warm-up")
    cpu0 = {n: cpu_seconds(p) for n, p in procs.items()}
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    wrks = [subprocess.Popen(cmd(t, c, duration), stdout=subprocess.PIPE, text=True)
            for t, c in targets]
    spy = None
    if profile is not None:
        base = profile / f"leader-c{conns}"
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(leader_pid),
             "-d", str(max(1, int(duration) - 1)), "-r", "200", "-f", "raw",
             "-o", f"{base}.folded"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wrk's own CPU: sampled just before each exits (our children: read /proc while they run)
    wrk_cpu = [0.0] * len(wrks)
    while any(w.poll() is None for w in wrks):
        for i, w in enumerate(wrks):
            if w.returncode is None:
                try:
                    wrk_cpu[i] = cpu_seconds(w.pid)
                except (OSError, IndexError):
                    pass
        time.sleep(0.05)
    outs = [w.stdout.read() if w.stdout else "" for w in wrks]
    wall = time.monotonic() - t0
    cpu1 = {n: cpu_seconds(p) for n, p in procs.items()}
    busy1 = machine_busy_seconds()
    if spy is not None:
        spy.wait(timeout=60)
    results = []
    for w, out in zip(wrks, outs, strict=True):
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if w.returncode != 0 or not lines:
            raise BenchError(f"wrk failed ({w.returncode}): {out[-500:]}")
        results.append(json.loads(lines[-1]))
    res = merge_wrk(results)
    res["cpu"] = {n: 100 * (cpu1[n] - cpu0[n]) / wall for n in procs}
    res["cpu"]["wrk"] = 100 * sum(wrk_cpu) / wall
    ours = sum(cpu1[n] - cpu0[n] for n in procs) + sum(wrk_cpu)
    lead = next(n for n in procs if n.endswith("(L)"))
    res["other"] = max(0.0, 100 * ((busy1 - busy0) - ours) / wall)
    res["leader_us"] = 1e6 * (cpu1[lead] - cpu0[lead]) / max(1, res["requests"])
    res["errors"] = res["non2xx"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--connections", default="1,16,256")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured row")
    p.add_argument("--reps", type=int, default=1, help="interleaved repetitions")
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--systems", default="wanfed,etcd")
    p.add_argument("--profile", type=Path, default=None,
                   help="py-spy the wanfed leader into this directory")
    p.add_argument("--clients", choices=("leader", "spread"), default="leader",
                   help="wrk to the leader only, or its connections dealt over all three "
                        "servers/members (the leader first); the same for both systems")
    p.add_argument("--tmp", default="/var/tmp")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = p.parse_args(argv)
    conns = [int(c) for c in args.connections.split(",") if c]
    systems = [s for s in args.systems.split(",") if s]
    if shutil.which("wrk") is None:
        print("error: no wrk: apt-get install -y wrk", file=sys.stderr)
        return 1
    os.environ["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    root = Path(tempfile.mkdtemp(prefix="wanfed-vs-etcd-", dir=args.tmp))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"data under {root}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs; {args.value_size}-byte values, {KEYS} keys, "
          f"{args.duration:g} s per row; clients to the {args.clients}", flush=True)
    ours: list[Server] = []
    etcd: list[Etcd] = []
    rows: list[tuple[str, int, dict[str, Any]]] = []
    failed = False
    try:
        targets: dict[str, tuple[list[str], dict[str, int], int]] = {}
        if "wanfed" in systems:
            ours = start_cluster(3, root)
            lead = leader_of(ours)
            targets["wanfed"] = (
                [f"{s.ip}:{s.http_port}" for s in leader_first(ours, lead)],
                {f"{s.name}{'(L)' if s is lead else ''}": s.pid for s in ours}, lead.pid)
        if "etcd" in systems:
            etcd = start_etcd(root)
            elead = etcd_leader(etcd)
            targets["etcd"] = ([m.host_port for m in leader_first(etcd, elead)],
                               {f"{m.name}{'(L)' if m is elead else ''}": m.pid for m in etcd},
                               elead.pid)
        for rep in range(args.reps):
            for c in conns:
                for system in systems:
                    members, procs, lpid = targets[system]
                    prof = args.profile if system == "wanfed" and rep == 0 else None
                    dealt = split_connections(
                        members if args.clients == "spread" else members[:1], c)
                    r = run_wrk(system, dealt, args.duration, args.value_size, procs, root,
                                prof, lpid)
                    rows.append((system, c, r))
                    cpu = " ".join(f"{n} {v:.0f}%" for n, v in r["cpu"].items())
                    print(f"{system:<6} c={c:<4} {r['rate']:8.0f} writes/s  p50 "
                          f"{r['p50_us'] / 1000:7.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  "
                          f"errors {r['errors']}  leader CPU/write {r['leader_us']:.0f} µs  "
                          f"cpu: {cpu}  other {r['other']:.0f}%  "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
                    if r["errors"]:
                        failed = True  # reported in the table; the other rows still run
    except BenchError as failure:
        print(f"error: {failure}", flush=True)
        failed = True
    finally:
        for s in ours:
            s.stop()
        for m in etcd:
            m.stop()
    print()
    print("| connections | wanfed writes/s | etcd writes/s | ratio | wanfed p99 ms | "
          "etcd p99 ms | leader CPU µs/write wanfed / etcd | wanfed CPU % (servers, wrk) "
          "| etcd CPU % (members, wrk) | failed wanfed / etcd |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---|---|")
    for c in conns:
        w = [r for s, cc, r in rows if s == "wanfed" and cc == c]
        e = [r for s, cc, r in rows if s == "etcd" and cc == c]
        for i in range(max(len(w), len(e))):
            wr, er = (w[i] if i < len(w) else None), (e[i] if i < len(e) else None)

            def fmt(r: dict[str, Any] | None, key: str, div: float = 1) -> str:
                return f"{r[key] / div:.0f}" if r is not None and key == "rate" else (
                    f"{r[key] / div:.1f}" if r is not None else "-")

            def cpus(r: dict[str, Any] | None) -> str:
                return ", ".join(f"{n} {v:.0f}" for n, v in r["cpu"].items()) if r else "-"

            ratio = f"{wr['rate'] / er['rate']:.2f}x" if wr and er else "-"
            print(f"| {c} | {fmt(wr, 'rate')} | {fmt(er, 'rate')} | {ratio} | "
                  f"{fmt(wr, 'p99_us', 1000)} | {fmt(er, 'p99_us', 1000)} | "
                  f"{fmt(wr, 'leader_us')} / {fmt(er, 'leader_us')} | {cpus(wr)} | "
                  f"{cpus(er)} | {fmt(wr, 'errors')} / {fmt(er, 'errors')} |")
    if not failed and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"(kept {root} for the logs)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
