# -*- test-case-name: tests.unit.connect.test_connect_ca_leafcache -*-
"""The agent's leaf certificate cache (the reference's ``connect-ca-leaf`` cache type).

One :class:`LeafCache` per agent (server or client) serves
``GET /v1/agent/connect/ca/leaf/<service>``. Entries are keyed by service and ACL token (a
token never gets a certificate another token obtained). A request:

1. reads the agent datacenter's roots (``ConnectCA.Roots``, stale allowed; a client agent's
   RPC goes to its servers). No trust domain: ``cluster has no CA bootstrapped yet``;
2. answers from the cache (``X-Cache: HIT``) while the cached leaf is still good: signed by
   the current signing key (its AKI equals the active root's ``SigningKeyID``) and not past
   its renewal point, a random time in 60-90% of its lifetime, as the reference's;
3. else makes a new EC P-256 key and CSR for
   ``spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`` and has it signed
   (``ConnectCA.Sign``; ``X-Cache: MISS``). Concurrent misses of one entry share one signing.
   When re-issuing fails and the cached leaf has not expired, that leaf is kept (a rate-limited
   server does not take certificates away) and the next attempt waits 1-30 s (random, so
   agents spread out as the reference's do); a first fetch reports the error.

A blocking request (``?index=N`` with ``N`` >= the entry's index) waits up to ``?wait``
(default 5 minutes, at most 10) for the entry to change: it watches the roots with a blocking
query and re-issues as soon as the active signing key changes (a root rotation or a new
intermediate) or the renewal point passes; at the deadline it answers the entry it has.
The entry's index is the ``ModifyIndex`` of the issued certificate (``X-Consul-Index``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.connect import ca
from wanfedtx.connect.errors import CAError
from wanfedtx.metrics import REGISTRY, Registry

log = Logger(namespace="agent.connect.leaf")

RPC = Callable[[str, dict[str, Any]], Deferred[Any]]

NO_CA = "cluster has no CA bootstrapped yet"
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
MIN_LIFETIME = 600.0
MAX_ENTRIES = 4096
HOLD_MAX = 30.0


@attrs.define
class LeafEntry:
    """One cached leaf: the ``IssuedCert`` (with ``PrivateKeyPEM``) and when to replace it."""

    issued: dict[str, Any]
    index: int
    fetched_at: float
    renew_at: float
    expires_at: float
    authority_key_id: str
    #: After a failed re-issue: no new attempt before this time (1-30 s later, random).
    hold_until: float = 0.0


def active_signing_key(roots: dict[str, Any]) -> str:
    """``SigningKeyID`` of the active root ("" when there is none)."""
    for r in roots.get("Roots") or []:
        if isinstance(r, dict) and r.get("Active"):
            return str(r.get("SigningKeyID") or "")
    return ""


def leaf_timing(cert_pem: str) -> tuple[float, float, str]:
    """(NotBefore, NotAfter) as Unix seconds and the colon-hex AKI of a leaf (first PEM)."""
    from cryptography import x509

    cert = ca.load_cert(cert_pem.split("-----END CERTIFICATE-----")[0]
                        + "-----END CERTIFICATE-----\n")
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        kid = ca.hex_string(aki.key_identifier or b"")
    except x509.ExtensionNotFound:
        kid = ""
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(), kid


class LeafCache:
    """Leaf certificates of one agent (see module)."""

    def __init__(self, rpc: RPC, clock: IReactorTime, datacenter: str,
                 rng: random.Random | None = None, max_entries: int = MAX_ENTRIES,
                 metrics: Registry = REGISTRY) -> None:
        self.rpc = rpc
        self.clock = clock
        self.datacenter = datacenter
        self.rng = rng if rng is not None else random.Random()
        self.max_entries = max_entries
        self.entries: dict[tuple[str, str], LeafEntry] = {}
        self._inflight: dict[tuple[str, str], list[Deferred[LeafEntry]]] = {}
        #: How many certificates were signed for this cache (tests read it).
        self.issued = 0
        self.requests = metrics.counter(
            "cache.connect-ca-leaf.requests", "Leaf certificate requests by cache result",
            ("result",))

    async def _roots(self, token: str, min_index: int = 0, wait: float = 0.0) -> dict[str, Any]:
        args: dict[str, Any] = {"Datacenter": self.datacenter, "Token": token,
                                "AllowStale": True}
        if min_index and wait > 0:
            args.update(MinQueryIndex=min_index, MaxQueryTime=int(wait * 1e9))
        reply = await self.rpc("ConnectCA.Roots", args)
        if not isinstance(reply, dict) or not reply.get("TrustDomain") or not reply.get("Roots"):
            raise CAError(NO_CA)
        return reply

    @staticmethod
    def _due_at(entry: LeafEntry, signing_key: str) -> float:
        """When ``entry`` must be replaced: at its renewal point, at once when another key
        signs now, never before a hold after a failed re-issue."""
        due = entry.renew_at if entry.authority_key_id == signing_key else 0.0
        return max(due, entry.hold_until)

    def _good(self, entry: LeafEntry, signing_key: str) -> bool:
        return self.clock.seconds() < self._due_at(entry, signing_key)

    async def get(self, service: str, token: str, min_index: int = 0,
                  wait: float = 0.0) -> tuple[LeafEntry, bool]:
        """(entry, cache hit) for ``service`` as ``token`` (see module for the rules)."""
        ca.check_service_name(service)
        key = (service, token)
        roots = await self._roots(token)
        entry = self.entries.get(key)
        if entry is None or not self._good(entry, active_signing_key(roots)):
            self.requests.inc(result="miss")
            return await self._refresh(key, roots, entry), False
        self.requests.inc(result="hit")
        self.entries[key] = self.entries.pop(key)  # most recently used last
        if not min_index or entry.index > min_index:
            return entry, True
        deadline = self.clock.seconds() + min(wait if wait > 0 else DEFAULT_WAIT, MAX_WAIT)
        while True:
            now = self.clock.seconds()
            current = self.entries.get(key)
            if current is not None and current is not entry:
                return current, False
            due = self._due_at(entry, active_signing_key(roots))
            step = min(deadline, due) - now
            if step <= 0 and now < due:
                return entry, True
            if step > 0:
                roots = await self._roots(token, int(roots.get("Index") or 1), step)
            if not self._good(entry, active_signing_key(roots)):
                new = await self._refresh(key, roots, entry)
                return new, new is entry

    async def _refresh(self, key: tuple[str, str], roots: dict[str, Any],
                       old: LeafEntry | None) -> LeafEntry:
        """A new leaf for ``key`` (one signing for concurrent callers); ``old`` is kept when
        signing fails and it has not expired."""
        waiters = self._inflight.get(key)
        if waiters is not None:
            d: Deferred[LeafEntry] = Deferred()
            waiters.append(d)
            return await d
        self._inflight[key] = []
        try:
            entry = await self._fetch(key, roots)
        except Exception as exc:
            for w in self._inflight.pop(key, []):
                w.errback(exc)
            if old is not None and self.clock.seconds() < old.expires_at:
                old.hold_until = self.clock.seconds() + self.rng.uniform(1.0, HOLD_MAX)
                log.warn("CA: keeping the cached leaf of {service}: re-issuing failed: {error}",
                         service=key[0], error=str(exc) or type(exc).__name__)
                return old
            raise
        for w in self._inflight.pop(key, []):
            w.callback(entry)
        return entry

    async def _fetch(self, key: tuple[str, str], roots: dict[str, Any]) -> LeafEntry:
        service, token = key
        key_pem, csr_pem = ca.make_leaf_csr(str(roots["TrustDomain"]), self.datacenter, service)
        issued = await self.rpc("ConnectCA.Sign", {
            "Datacenter": self.datacenter, "Token": token, "CSR": csr_pem})
        if not isinstance(issued, dict) or not isinstance(issued.get("CertPEM"), str):
            raise CAError("ConnectCA.Sign returned no certificate")
        self.issued += 1
        out = dict(issued)
        out["PrivateKeyPEM"] = key_pem
        start, end, aki = leaf_timing(out["CertPEM"])
        now = self.clock.seconds()
        lifetime = end - start
        if lifetime < MIN_LIFETIME or now >= start + 0.9 * lifetime:
            renew_at = now
        else:
            renew_at = start + lifetime * self.rng.uniform(0.6, 0.9)
        entry = LeafEntry(out, max(1, int(out.get("ModifyIndex") or 1)), now, renew_at, end,
                          aki)
        self._store(key, entry)
        return entry

    def _store(self, key: tuple[str, str], entry: LeafEntry) -> None:
        now = self.clock.seconds()
        for k in [k for k, e in self.entries.items() if e.expires_at <= now]:
            del self.entries[k]
        self.entries.pop(key, None)
        self.entries[key] = entry
        while len(self.entries) > self.max_entries:
            del self.entries[next(iter(self.entries))]
