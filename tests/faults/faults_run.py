"""The fault suite's runner: a seeded schedule of faults against the federation under load,
then the checks, as one ``Report``.

Fault kinds (each heals before the next one starts):

* ``kill_server``: SIGKILL a random server, restart it after ``hold``;
* ``kill_leader``: SIGKILL a datacenter's raft leader, restart it after ``hold``;
* ``pause_leader``: SIGSTOP a leader for ``pause`` seconds (a slow node), then SIGCONT;
* ``gateway_loss``: SIGKILL one mesh gateway for ``gateway_down`` seconds, then restart it;
* ``partition``: drop everything between the secondary and the primary for ``partition``
  seconds; after it heals, the time until every server's federation states and WAN members
  equal the primary leader's is measured (``reconverge``);
* ``wan_degraded``: 200 ms delay and 5 % loss between the datacenters for ``degraded`` seconds.

Checks (``Report.failures``): the history is linearizable per key in each datacenter, no
acknowledged write is lost, no process exits unless told to, no log has a traceback, every
partition reconverges within ``reconverge_limit``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
from faults_cluster import Cluster, Proc, http_json
from faults_load import CLIENT_TIMEOUT, Load, delete_prefix, final_read, stored_keys
from faults_net import Network

from wanfedtx.cli.demo import poll_until
from wanfedtx.raft.linearizability import Op, check_history

KINDS = ("kill_leader", "kill_server", "pause_leader", "gateway_loss", "partition",
         "wan_degraded")


@attrs.frozen
class Profile:
    seconds: float  # length of the fault phase
    hold: float = 1.0
    pause: float = 3.0
    gateway_down: float = 6.0
    partition: float = 6.0
    degraded: float = 6.0
    gap: float = 1.0  # after a fault has healed and the datacenters have a leader again
    warmup: float = 10.0  # RSS is compared from this long after the load started
    reconverge_limit: float = 5.0
    workers_per_dc: int = 3
    keys: int = 6  # register keys per datacenter (more keys: shorter histories to check)
    epoch: float = 0.0  # seconds per unique-key epoch (0: one epoch, checked at the end)
    # unique-key writes per second and datacenter at most (0: as fast as the load goes). The
    # servers keep a tombstone per deleted key for 15 minutes, so paced writes give a state of
    # the same size whatever the machine's speed: its RSS can then be compared over time.
    unique_rate: float = 0.0
    # never SIGKILL server 3 and gateway 2 of each datacenter (they may be paused), so their
    # RSS covers the whole run; ``rss_limit``: the most it may grow after the warm-up (%)
    spare: bool = False
    rss_limit: float | None = None
    seed: int = 13


SHORT = Profile(seconds=40, epoch=15.0)
LONG = Profile(seconds=600, hold=2.0, pause=5.0, gateway_down=20.0, partition=60.0,
               degraded=30.0, gap=2.0, warmup=60.0, keys=24, epoch=30.0, spare=True,
               rss_limit=10.0, unique_rate=60.0)


@attrs.define
class Event:
    kind: str
    dc: str
    target: str
    start: float
    end: float = 0.0
    reconverge: float | None = None  # partition: seconds after healing until all agree
    detail: str = ""  # partition: what still differed when the limit passed


@attrs.define
class Report:
    profile: Profile
    events: list[Event]
    setup_seconds: float
    acked_puts: int = 0
    acked_unique: int = 0
    epochs: int = 1
    lost: int = 0
    reads: int = 0
    failed: int = 0
    linearizable: str = ""
    outage: dict[str, float] = attrs.Factory(dict)  # local writes
    outage_xdc: dict[str, float] = attrs.Factory(dict)  # ?dc= writes into the datacenter
    gateway_xdc: tuple[int, int] = (0, 0)  # ?dc= requests during gateway loss: (ok, failed)
    unexpected_exits: dict[str, list[int]] = attrs.Factory(dict)
    tracebacks: dict[str, int] = attrs.Factory(dict)
    rss: dict[str, tuple[int, int, int]] = attrs.Factory(dict)  # first, last, max (kB)
    rss_minutes: dict[str, list[int]] = attrs.Factory(dict)  # kB at each minute of the load
    errors: dict[str, int] = attrs.Factory(dict)
    failures: list[str] = attrs.Factory(list)


def leader_of(cluster: Cluster, dc: str) -> Proc | None:
    """The server every live server of ``dc`` names as leader, if they agree."""
    names = set()
    for p in cluster.servers(dc):
        if not p.alive() or p.stopped:
            continue
        code, body = http_json(p.http + "/v1/status/leader", timeout=2)
        if code != 200 or not body:
            return None
        names.add(str(body).rsplit(":", 1)[0])
    if len(names) != 1:
        return None
    ip = names.pop()
    return next((p for p in cluster.servers(dc) if p.ip == ip), None)


def wait_leaders(cluster: Cluster, seconds: float = 60.0) -> bool:
    return poll_until(
        lambda: all(leader_of(cluster, dc) is not None for dc in cluster.dcs), seconds, 0.2)


def _view(p: Proc) -> Any:
    """What must agree everywhere after a partition: federation states (datacenter and its
    gateways) and WAN members with their status."""
    code, states = http_json(p.http + "/v1/internal/federation-states", timeout=2)
    code2, members = http_json(p.http + "/v1/agent/members?wan=1", timeout=2)
    if code != 200 or code2 != 200:
        return None
    fed = sorted(
        (s["Datacenter"], sorted(g["Service"]["Address"] for g in s.get("MeshGateways") or ()))
        for s in states
    )
    wan = sorted((m["Name"], m["Status"]) for m in members)
    return fed, wan


def differences(cluster: Cluster) -> str:
    """Each server's view where it differs from the primary leader's (for the report)."""
    leader = leader_of(cluster, cluster.primary)
    if leader is None:
        return "no primary leader"
    want = _view(leader)
    out = [f"{leader.name} (primary leader): {want}"]
    for dc in cluster.dcs:
        for p in cluster.servers(dc):
            got = _view(p)
            if got != want:
                out.append(f"{p.name}: {got}")
    return "; ".join(out)


def converged(cluster: Cluster) -> bool:
    primary_leader = leader_of(cluster, cluster.primary)
    if primary_leader is None:
        return False
    want = _view(primary_leader)
    if want is None or any(status != 1 for _, status in want[1]):
        return False
    for dc in cluster.dcs:
        for p in cluster.servers(dc):
            if _view(p) != want:
                return False
    return True


class Runner:
    def __init__(self, root: Path, profile: Profile, dcs: tuple[str, ...] = ("primary",
                                                                            "secondary")) -> None:
        self.root = root
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.net = Network(dcs)
        self.cluster: Cluster | None = None
        self.events: list[Event] = []
        self._watching = threading.Event()
        # set when a process exits unexpectedly: the schedule ends at once (a fault's hold
        # returns early) and the checks report the exit
        self._abort = threading.Event()
        self.load_start = 0.0
        self._load_done = threading.Event()
        self.checked_epochs: set[tuple[str, int]] = set()
        # checked epochs whose delete was not acknowledged yet (a fault was in the way): asked
        # again every epoch, so the servers' data stays bounded whatever the faults do
        self.undeleted: set[tuple[str, int]] = set()
        self.lost: list[str] = []

    def _live_hosts(self, dc: str) -> list[str]:
        assert self.cluster is not None
        return [p.ip for p in self.cluster.servers(dc) if p.alive() and not p.stopped]

    def _watch(self) -> None:
        while not self._watching.wait(1.0):
            assert self.cluster is not None
            if self.cluster.watch():
                self._abort.set()

    def _hold(self, seconds: float) -> None:
        """Keep a fault in place for ``seconds`` (its duration), unless the run is aborted."""
        self._abort.wait(seconds)

    def run(self) -> Report:
        t0 = time.monotonic()
        self.net.up()
        try:
            self.cluster = cluster = Cluster(self.root, self.net)
            cluster.start_all()
            watcher = threading.Thread(target=self._watch, daemon=True)
            watcher.start()
            try:
                if not wait_leaders(cluster, 90) or not poll_until(lambda: converged(cluster), 90):
                    raise RuntimeError(f"the federation did not form; logs in {self.root}")
                setup = time.monotonic() - t0
                load = Load(self.net.dcs, self._live_hosts, self.profile.seed,
                            self.profile.workers_per_dc, keys=self.profile.keys,
                            unique_rate=self.profile.unique_rate)
                self.load_start = time.monotonic()
                load.start()
                epochs = threading.Thread(target=self._epochs, args=(load,), daemon=True)
                epochs.start()
                try:
                    self._faults()
                finally:
                    self._load_done.set()
                    epochs.join()
                    load.stop()
                report = self._check(load, setup)
            finally:
                self._watching.set()
                watcher.join()
                cluster.stop_all()
            report.tracebacks = cluster.tracebacks()
            if report.tracebacks:
                report.failures.append(f"tracebacks in logs: {report.tracebacks}")
            return report
        finally:
            self.net.down()

    # -- the schedule -----------------------------------------------------------------------

    def _faults(self) -> None:
        assert self.cluster is not None
        # At least ``seconds``, and until every kind has run once (a slow machine gets through
        # the first cycle later, never skips part of it), within 3x that.
        start = time.monotonic()
        end, hard_end = start + self.profile.seconds, start + 3 * self.profile.seconds
        order: list[str] = []
        while not self._abort.is_set() and (time.monotonic() < end or (
            {e.kind for e in self.events} != set(KINDS) and time.monotonic() < hard_end
        )):
            if not order:
                order = list(KINDS)
                self.rng.shuffle(order)
            kind = order.pop()
            getattr(self, f"_{kind}")()
            if self._abort.is_set():
                break
            wait_leaders(self.cluster, 60)
            self._hold(self.profile.gap)

    def _secondary(self) -> str:
        return self.rng.choice(self.net.dcs[1:])

    def _begin(self, kind: str, dc: str, target: str) -> Event:
        e = Event(kind, dc, target, time.monotonic())
        self.events.append(e)
        return e

    def _spared(self, p: Proc) -> bool:
        return self.profile.spare and p.name[1:] in ("3", "g2")

    def _kill_server(self) -> None:
        assert self.cluster is not None
        dc = self.rng.choice(self.net.dcs)
        p = self.rng.choice([p for p in self.cluster.servers(dc) if not self._spared(p)])
        self._kill_restart("kill_server", p, self.profile.hold)

    def _kill_leader(self) -> None:
        assert self.cluster is not None
        for dc in self.rng.sample(self.net.dcs, len(self.net.dcs)):
            p = leader_of(self.cluster, dc)
            if p is not None and not self._spared(p):
                self._kill_restart("kill_leader", p, self.profile.hold)
                return

    def _kill_restart(self, kind: str, p: Proc, hold: float) -> None:
        assert self.cluster is not None
        e = self._begin(kind, p.dc, p.name)
        self.cluster.kill(p.name)
        self._hold(hold)
        self.cluster.start(p.name)
        e.end = time.monotonic()

    def _pause_leader(self) -> None:
        assert self.cluster is not None
        dc = self.rng.choice(self.net.dcs)
        p = leader_of(self.cluster, dc)
        if p is None:
            return
        e = self._begin("pause_leader", dc, p.name)
        self.cluster.pause(p.name)
        self._hold(self.profile.pause)
        self.cluster.resume(p.name)
        e.end = time.monotonic()

    def _gateway_loss(self) -> None:
        assert self.cluster is not None
        dc = self.rng.choice(self.net.dcs)
        p = self.rng.choice([p for p in self.cluster.gateways(dc) if not self._spared(p)])
        self._kill_restart("gateway_loss", p, self.profile.gateway_down)

    def _partition(self) -> None:
        assert self.cluster is not None
        dc = self._secondary()
        sides = [dc, self.net.dcs[0]]
        e = self._begin("partition", dc, f"{dc}|{self.net.dcs[0]}")
        self.net.set_fault("partition", sides, True)
        self._hold(self.profile.partition)
        self.net.set_fault("partition", sides, False)
        e.end = time.monotonic()
        if self._abort.is_set():
            e.detail = "schedule aborted (a process exited unexpectedly)"
            return  # a dead process never lets the federation reconverge: nothing to time
        cluster = self.cluster
        if poll_until(lambda: converged(cluster), self.profile.reconverge_limit, 0.1):
            e.reconverge = time.monotonic() - e.end
            return
        e.detail = differences(cluster)[:2000]
        if poll_until(lambda: converged(cluster), 120, 0.1):
            e.reconverge = time.monotonic() - e.end

    def _wan_degraded(self) -> None:
        dc = self._secondary()
        sides = [dc, self.net.dcs[0]]
        e = self._begin("wan_degraded", dc, "200ms+5%")
        self.net.set_fault("delay", sides, True)
        self.net.set_fault("loss", sides, True)
        self._hold(self.profile.degraded)
        self.net.set_fault("loss", sides, False)
        self.net.set_fault("delay", sides, False)
        e.end = time.monotonic()

    # -- the checks ---------------------------------------------------------------------------

    def _epochs(self, load: Load) -> None:
        """Every ``epoch`` seconds, start a new epoch of unique keys; check and delete the
        epochs that ended longer ago than a request can take."""
        if self.profile.epoch <= 0:
            return
        ended: list[tuple[int, float]] = []
        while not self._load_done.wait(self.profile.epoch):
            ended.append((load.epoch, time.monotonic()))
            load.epoch += 1
            for dc, epoch in sorted(self.undeleted):
                hosts = self._live_hosts(dc)
                if hosts and delete_prefix(hosts[0], f"u/{epoch}/"):
                    self.undeleted.discard((dc, epoch))
            for epoch, at in list(ended):
                if time.monotonic() - at > CLIENT_TIMEOUT + 1 and self._check_epoch(
                    load, epoch, True
                ):
                    ended.remove((epoch, at))

    def _check_epoch(self, load: Load, epoch: int, delete: bool) -> bool:
        """Every acknowledged unique key of ``epoch`` is stored in each datacenter (else it
        counts as lost); then the epoch's keys are deleted (a delete that fails is asked again
        every epoch until acknowledged). False while a datacenter has not answered (it is
        asked again next time)."""
        for dc in self.net.dcs:
            if (dc, epoch) in self.checked_epochs:
                continue
            hosts = self._live_hosts(dc)
            present = stored_keys(hosts[0], f"u/{epoch}/") if hosts else None
            if present is None:
                continue
            self.lost += sorted(load.acked_unique[dc, epoch] - present)
            self.checked_epochs.add((dc, epoch))
            if delete and not delete_prefix(hosts[0], f"u/{epoch}/"):
                self.undeleted.add((dc, epoch))
        return all((dc, epoch) in self.checked_epochs for dc in self.net.dcs)

    def _check(self, load: Load, setup: float) -> Report:
        assert self.cluster is not None
        cluster = self.cluster
        r = Report(self.profile, self.events, setup)
        if not wait_leaders(cluster, 60):
            r.failures.append("no leader in every datacenter after the faults")
        history = list(load.history)
        for dc in self.net.dcs:
            hosts = self._live_hosts(dc)
            for k in range(load.keys):
                t0 = time.monotonic()
                status, got = final_read(hosts[0], dc, f"r{k}")
                if status in (200, 404):
                    history.append(Op((dc, f"r{k}"), "get", got, t0, time.monotonic()))
                else:
                    r.failures.append(f"final read of {dc}/r{k}: {status}")
        for epoch in range(load.epoch + 1):
            if not self._check_epoch(load, epoch, False):
                r.failures.append(f"could not list the keys of epoch {epoch}")
        r.lost = len(self.lost)
        if self.lost:
            r.failures.append(f"{r.lost} acknowledged writes lost: {sorted(self.lost)[:5]}")
        r.acked_puts = sum(1 for o in history if o.kind == "put" and not o.unknown)
        r.acked_unique = sum(len(s) for s in load.acked_unique.values())
        r.epochs = load.epoch + 1
        r.reads = sum(1 for o in history if o.kind == "get")
        r.failed = sum(1 for o in load.outcomes if not o.ok)
        r.errors = dict(load.errors.most_common(8))
        try:
            result = check_history(history)
            r.linearizable = "linearizable" if result.ok else f"NOT linearizable: {result.detail}"
        except RuntimeError as e:  # the search grew too large: no verdict
            r.linearizable = f"unknown ({e})"
        if not r.linearizable.startswith("linearizable"):
            r.failures.append(r.linearizable)
        r.outage = outages(load, self.events, xdc=False)
        r.outage_xdc = outages(load, self.events, xdc=True)
        r.gateway_xdc = gateway_failover(load, self.events)
        for p in cluster.procs.values():
            if p.unexpected_exits:
                r.unexpected_exits[p.name] = p.unexpected_exits
            # RSS of processes that ran the whole time, from the end of the warm-up on
            settled = [kb for t, kb in p.rss_kb if t >= self.load_start + self.profile.warmup]
            if p.starts == 1 and len(settled) >= 2:
                r.rss[p.name] = (settled[0], settled[-1], max(settled))
                r.rss_minutes[p.name] = _per_minute(p.rss_kb, self.load_start)
        limit = self.profile.rss_limit
        for name, (first, last, _) in r.rss.items():
            if limit is not None and last > first * (1 + limit / 100):
                r.failures.append(f"{name}: RSS grew from {first} to {last} kB (> {limit} %)")
        if r.unexpected_exits:
            r.failures.append(f"processes exited unexpectedly: {r.unexpected_exits}")
        for e in self.events:
            if e.kind == "partition" and not self._abort.is_set():
                if e.reconverge is None or e.reconverge > self.profile.reconverge_limit:
                    r.failures.append(f"partition of {e.dc}: reconverged after {e.reconverge} s"
                                      f" (limit {self.profile.reconverge_limit} s); {e.detail}")
        return r


def outages(load: Load, events: list[Event], xdc: bool) -> dict[str, float]:
    """Per fault kind, the longest time without an acknowledged write to the datacenter the
    fault hit, from the fault's start (the gap that overlaps the fault or the 10 s after it, up
    to the next fault), counting writes sent to its own servers (``xdc`` False) or with
    ``?dc=`` from another datacenter (True)."""
    done: dict[str, list[float]] = defaultdict(list)
    for o in load.outcomes:
        if o.ok and o.kind != "get" and o.xdc == xdc:
            done[o.dc].append(o.t)
    for ts in done.values():
        ts.sort()
    out: dict[str, float] = {}
    load_end = max((o.t for o in load.outcomes), default=0.0)  # the load stops after the faults
    for i, e in enumerate(events):
        ts = done[e.dc]
        following = events[i + 1].start if i + 1 < len(events) else load_end
        lo, hi = e.start, min(e.end + 10, following)
        longest = 0.0
        prev = lo  # from the fault's start (an earlier fault's outage is not counted twice)
        for t in ts:
            if t < lo:
                continue
            longest = max(longest, min(t, following) - prev)
            prev = t
            if t > hi:
                break
        else:
            longest = max(longest, hi - prev)
        out[e.kind] = max(out.get(e.kind, 0.0), longest)
    return out


def gateway_failover(load: Load, events: list[Event]) -> tuple[int, int]:
    """``?dc=`` requests sent while a gateway was down: (succeeded, failed)."""
    ok = failed = 0
    windows = [(e.start, e.end) for e in events if e.kind == "gateway_loss"]
    for o in load.outcomes:
        if o.xdc and any(a <= o.t <= b for a, b in windows):
            if o.ok:
                ok += 1
            else:
                failed += 1
    return ok, failed


def _per_minute(samples: list[tuple[float, int]], start: float) -> list[int]:
    """The first RSS sample of each minute since ``start`` (the curve a leak shows as a slope
    and allocator high-water as a plateau)."""
    out: dict[int, int] = {}
    for t, kb in samples:
        if t >= start:
            out.setdefault(int((t - start) // 60), kb)
    return [out[m] for m in sorted(out)]
