"""The fault suite's client load: threads writing and reading KV keys over HTTP, with and
without ``?dc=``, recording a history for the linearizability checker.

Each worker belongs to a datacenter and talks to one of its live servers (another one after a
failure). A local worker's operations target its own datacenter; a cross-datacenter worker's
go to another one with ``?dc=`` (through the gateways), so a hung cross-datacenter request never
holds up local traffic:

* register keys ``r0..r{n}``: ``PUT`` of a unique value or a default-consistency ``GET``; both
  land in the history as ``Op((dc, key), ...)``; a write that failed or timed out has an unknown
  outcome (``complete = inf``), a failed read is left out;
* unique keys ``u/<epoch>/<worker>-<n>``: written once each; every acknowledged one must be
  there when its epoch is checked (``lost``). Long runs move to a new epoch every so often and
  check and delete the epochs no request can still be writing to, so the servers' data (and
  RSS) stays bounded.

Every outcome is also kept as ``(time, target dc, cross-dc, kind, ok)`` for the outage and
gateway-failover figures.
"""

from __future__ import annotations

import http.client
import math
import random
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable

import attrs

from wanfedtx.raft.linearizability import Op

CLIENT_TIMEOUT = 15.0  # rpc_hold_timeout (7 s) plus the forwarding bound, with room


@attrs.frozen
class Outcome:
    t: float  # completion of a success, invocation of a failure
    dc: str  # the datacenter whose data the request touched
    xdc: bool  # sent with ?dc= to a server of the other datacenter
    kind: str  # put | get | unique
    ok: bool
    error: str = ""


class Load:
    def __init__(
        self,
        dcs: tuple[str, ...],
        servers: Callable[[str], list[str]],
        seed: int,
        workers_per_dc: int = 3,
        xdc_workers_per_dc: int = 2,
        keys: int = 6,
        unique_rate: float = 0.0,
    ) -> None:
        """``servers(dc)`` lists the ``host`` of the datacenter's servers that are up now;
        ``unique_rate`` caps unique-key writes per second per target datacenter (0: no cap;
        over it a worker reads a register key instead)."""
        self.dcs = dcs
        self.servers = servers
        self.seed = seed
        self.workers_per_dc = workers_per_dc
        self.keys = keys
        self.xdc_workers_per_dc = xdc_workers_per_dc
        self.unique_rate = unique_rate
        self._unique_next: dict[str, float] = {}
        self.history: list[Op] = []
        self.outcomes: list[Outcome] = []
        self.epoch = 0
        self.acked_unique: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for dc in self.dcs:
            n = self.workers_per_dc + (self.xdc_workers_per_dc if len(self.dcs) > 1 else 0)
            for w in range(n):
                xdc = w >= self.workers_per_dc
                t = threading.Thread(target=self._worker, args=(dc, w, xdc), daemon=True)
                self._threads.append(t)
                t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CLIENT_TIMEOUT + 5)

    def _unique_allowed(self, dc: str) -> bool:
        """True if a unique-key write to ``dc`` fits ``unique_rate`` (bursts of up to 1 s)."""
        if self.unique_rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            due = max(self._unique_next.get(dc, now), now - 1.0)
            if due > now:
                return False
            self._unique_next[dc] = due + 1.0 / self.unique_rate
            return True

    # -- one worker ---------------------------------------------------------------------------

    def _worker(self, home: str, w: int, xdc: bool) -> None:
        rng = random.Random(f"{self.seed}-{home}-{w}")
        wid = f"{home[0]}{w}"
        host = ""
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set():
            if conn is None:
                live = self.servers(home)
                if not live:
                    self._stop.wait(0.2)  # back off; ends at once when the load stops
                    continue
                host = rng.choice(live)
                conn = http.client.HTTPConnection(host, 8500, timeout=CLIENT_TIMEOUT)
            others = [d for d in self.dcs if d != home]
            target = rng.choice(others) if xdc else home
            query = f"dc={target}" if xdc else ""
            n += 1
            r = rng.random()
            if r < 0.4:
                kind, key, value = "put", f"r{rng.randrange(self.keys)}", f"{wid}-{n}"
            elif r < 0.85:
                kind, key, value = "get", f"r{rng.randrange(self.keys)}", ""
            elif self._unique_allowed(target):
                kind, key, value = "unique", f"u/{self.epoch}/{wid}-{n}", "1"
            else:
                kind, key, value = "get", f"r{rng.randrange(self.keys)}", ""
            t0 = time.monotonic()
            try:
                if kind == "get":
                    status, body = _request(conn, "GET", key, f"{query}&raw" if query else "raw")
                    if status == 404:
                        got: str | None = None
                    elif status == 200:
                        got = body.decode()
                    else:
                        raise _Failed(f"{status} {body[:80]!r}")
                    t1 = time.monotonic()
                    self._record(Op((target, key), "get", got, t0, t1),
                                 Outcome(t1, target, xdc, kind, True))
                else:
                    status, body = _request(conn, "PUT", key, query, value.encode())
                    if status != 200 or body.strip() != b"true":
                        raise _Failed(f"{status} {body[:80]!r}")
                    t1 = time.monotonic()
                    with self._lock:
                        if kind == "put":
                            self.history.append(Op((target, key), "put", value, t0, t1))
                        else:
                            self.acked_unique[target, int(key.split("/")[1])].add(key)
                        self.outcomes.append(Outcome(t1, target, xdc, kind, True))
            except (OSError, http.client.HTTPException, _Failed) as e:
                reason = _reason(e)
                op = Op((target, key), "put", value, t0, math.inf) if kind == "put" else None
                self._record(op, Outcome(t0, target, xdc, kind, False, reason))
                if not isinstance(e, _Failed):
                    conn.close()
                    conn = None
                self._stop.wait(0.05)

    def _record(self, op: Op | None, outcome: Outcome) -> None:
        with self._lock:
            if op is not None:
                self.history.append(op)
            self.outcomes.append(outcome)
            if not outcome.ok:
                self.errors[outcome.error] += 1


class _Failed(Exception):
    pass


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.split("\n")[0][:120]


def _request(
    conn: http.client.HTTPConnection, method: str, key: str, query: str, body: bytes | None = None
) -> tuple[int, bytes]:
    path = "/v1/kv/" + urllib.parse.quote(key) + (f"?{query}" if query else "")
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read()


def final_read(host: str, dc: str, key: str) -> tuple[int, str | None]:
    """A ``?consistent`` read of ``key`` through ``host`` (a server of ``dc``)."""
    conn = http.client.HTTPConnection(host, 8500, timeout=CLIENT_TIMEOUT)
    try:
        status, body = _request(conn, "GET", key, "consistent&raw")
        return status, (body.decode() if status == 200 else None)
    finally:
        conn.close()


def stored_keys(host: str, prefix: str) -> set[str] | None:
    """Keys under ``prefix`` (``?keys&consistent``), or None if the server did not answer."""
    import json

    conn = http.client.HTTPConnection(host, 8500, timeout=CLIENT_TIMEOUT)
    try:
        status, body = _request(conn, "GET", prefix, "keys&consistent")
        if status == 404:
            return set()
        if status != 200:
            return None
        return set(json.loads(body))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def delete_prefix(host: str, prefix: str) -> bool:
    """``DELETE /v1/kv/<prefix>?recurse``: True once the server acknowledged it."""
    conn = http.client.HTTPConnection(host, 8500, timeout=CLIENT_TIMEOUT)
    try:
        status, body = _request(conn, "DELETE", prefix, "recurse")
        return status == 200 and body.strip() == b"true"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
