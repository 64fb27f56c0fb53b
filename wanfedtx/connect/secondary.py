# -*- test-case-name: tests.unit.connect.test_connect_ca_secondary -*-
"""Leader routine of a secondary datacenter: ``secondary CA roots watch``.

As the reference's ``secondaryCARootWatch`` + ``initializeSecondaryCA``: a blocking
``ConnectCA.Roots`` forwarded to the primary (through the gateways with WAN federation; up to
600 s per call; ``MinQueryIndex`` follows the replies and is reset to 0 when it goes back).
Before the first answer the secondary stores its own configuration (its own cluster ID, so
its trust domain is its own and its roots are empty, as the reference's). For each answer
with a trust domain and an active root:

1. the local CA configuration adopts the primary's cluster ID (so this datacenter's trust domain
   is the primary's);
2. unless the stored intermediate is signed by the primary's active root, a new EC P-256 key
   and CSR are made and sent to the primary (``ConnectCA.SignIntermediate``); the answer is
   checked (key, CA flag, URI, signature) and stored with its key (``connect-ca-builtin``);
3. the local roots become the primary's, the active one carrying the intermediate in
   ``IntermediateCerts`` and its SKI as ``SigningKeyID`` (leaves in this datacenter are signed
   by the intermediate).

An error is logged (``CA root replication failed, will retry``) and retried after 2, 4, ...
256 s. A new active root in the primary (a rotation) is seen by the blocking query at once, and
the intermediate is replaced by one the new root signed. An intermediate past half its
lifetime is replaced too (:meth:`SecondaryCARootWatch.refresh`, called hourly by
:class:`~wanfedtx.connect.routines.IntermediateRenewal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.connect import ca, intermediate
from wanfedtx.connect import fsm as ca_fsm
from wanfedtx.connect.endpoints import ROOTS, SIGN_INTERMEDIATE, provider_state_id
from wanfedtx.connect.errors import CAError
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.services import Service
from wanfedtx.state.connect_ca import CA_ROOTS

log = Logger(namespace="agent.server.connect")

ROUTINE = "secondary CA roots watch"
MAX_QUERY_TIME = 600.0
MAX_BACKOFF = 256.0
_COMPARED = ("ID", "SigningKeyID", "IntermediateCerts", "Active", "RootCert")


class SecondaryCARootWatch(Service):
    """The secondary's leader routine (see module)."""

    def __init__(self, endpoints: Endpoints, primary_datacenter: str,
                 base_config: Mapping[str, Any], clock: IReactorTime,
                 max_query_time: float = MAX_QUERY_TIME, token: str = "") -> None:
        self.setName(ROUTINE)
        self.token = token
        self.endpoints = endpoints
        self.primary = primary_datacenter
        self.base_config = dict(base_config)
        self.clock = clock
        self.max_query_time = max_query_time
        self._task: Deferred[None] | None = None
        self._wake: Deferred[None] | None = None
        self._lock = DeferredLock()
        #: How many answers of the primary were applied (tests wait on it).
        self.synced = 0

    def startService(self) -> None:
        super().startService()
        task = Deferred.fromCoroutine(self.loop())
        self._task = task
        task.addErrback(self._ended)

    @staticmethod
    def _ended(f: Failure) -> None:
        if f.check(CancelledError):
            return
        if f.check(LeadershipError):
            log.info("CA: leadership lost: {error}", error=f.getErrorMessage())
            return
        log.failure("CA: the secondary CA roots watch stopped", f)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        task, self._task = self._task, None
        if task is None or task.called:
            return succeed(None)
        task.cancel()
        return task.addBoth(lambda _: None)

    async def _call(self, method: str, args: dict[str, Any]) -> Any:
        args = {"Datacenter": self.primary, **args}
        forwarded, reply = await self.endpoints._forward(method, args, write=False)
        if not forwarded:
            raise CAError(f"{method} was not forwarded to the primary datacenter")
        return reply

    async def bootstrap(self) -> None:
        """Store this datacenter's own CA configuration (its own cluster ID) when there is
        none, as the reference does before the primary answers: until then the secondary's
        trust domain is its own and its roots are empty."""
        _, config = self.endpoints.state.ca_config(None)
        if config is None:
            await self._apply({"Op": ca_fsm.OP_SET_CONFIG, "Config": dict(self.base_config)})

    async def loop(self) -> None:
        index = 0
        failures = 0
        try:
            await self.bootstrap()
        except (CancelledError, LeadershipError):
            raise
        except Exception as exc:
            log.warn("CA: failed to store the secondary's own CA configuration: {error}",
                     error=str(exc) or type(exc).__name__)
        while self.running:
            try:
                reply = await self._call(ROOTS, {
                    "MinQueryIndex": index,
                    "MaxQueryTime": int(self.max_query_time * 1e9),
                })
                new_index = int(reply.get("Index") or 0)
                index = new_index if new_index >= index else 0
                await self.sync(reply)
                failures = 0
            except (CancelledError, LeadershipError):
                raise
            except Exception as exc:
                failures += 1
                wait = min(2.0 ** failures, MAX_BACKOFF)
                log.warn("CA root replication failed, will retry: error={error} wait={wait}s",
                         error=str(exc) or type(exc).__name__, wait=wait)
                index = 0
                await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until :meth:`wake`."""
        done: Deferred[None] = Deferred()
        self._wake = done
        call = self.clock.callLater(seconds, self.wake)
        try:
            await done
        finally:
            self._wake = None
            if call.active():
                call.cancel()

    def wake(self) -> None:
        """A server of another datacenter joined the WAN pool: retry now, not after the
        backoff (the primary may just have become reachable)."""
        wake, self._wake = self._wake, None
        if wake is not None and not wake.called:
            wake.callback(None)

    async def _apply(self, body: dict[str, Any]) -> Any:
        return await self.endpoints._apply(MessageType.CONNECT_CA, body)

    async def refresh(self) -> None:
        """Ask the primary for its roots now (no blocking) and apply them: the renewal
        routine's way to replace an intermediate past half its lifetime."""
        await self.sync(await self._call(ROOTS, {}))

    async def sync(self, reply: Mapping[str, Any]) -> None:
        """Apply one answer of the primary (one at a time)."""
        await self._lock.acquire()
        try:
            await self._sync(reply)
        finally:
            self._lock.release()

    def needs_renewal(self, inter_pem: str) -> bool:
        """True once more than half of the intermediate's lifetime has passed (the
        reference renews then)."""
        cert = ca.load_cert(inter_pem)
        start = cert.not_valid_before_utc.timestamp()
        end = cert.not_valid_after_utc.timestamp()
        return self.clock.seconds() > start + (end - start) / 2

    def current_intermediate(self) -> str:
        """The stored intermediate of this datacenter ("" before the first one)."""
        _, config = self.endpoints.state.ca_config(None)
        if config is None:
            return ""
        row = self.endpoints.state.ca_provider_state(
            provider_state_id(config.get("Config") or {}, False))
        return str((row or {}).get("IntermediateCert") or "")

    async def _sync(self, reply: Mapping[str, Any]) -> None:
        td = str(reply.get("TrustDomain") or "")
        if not td:
            log.info("CA: trust domain from primary datacenter is not initialized yet")
            return
        cluster_id = td.split(".", 1)[0]
        roots = list(reply.get("Roots") or [])
        active = next((r for r in roots
                       if r.get("ID") == reply.get("ActiveRootID") and r.get("Active")), None)
        if active is None:
            raise CAError("primary datacenter does not have an active root CA for Connect")
        state = self.endpoints.state
        _, config = state.ca_config(None)
        if config is None or config.get("ClusterID") != cluster_id:
            base = dict(config) if config is not None else dict(self.base_config)
            base.update({"ClusterID": cluster_id, "ModifyIndex": 0})
            await self._apply({"Op": ca_fsm.OP_SET_CONFIG, "Config": base})
            _, config = state.ca_config(None)
            if config is None:
                raise CAError("the CA configuration was not stored")
        pid = provider_state_id(config.get("Config") or {}, False)
        row = state.ca_provider_state(pid)
        root_pem = str(active["RootCert"])
        inter = str((row or {}).get("IntermediateCert") or "")
        renew = bool(inter) and self.needs_renewal(inter)
        if not inter or renew or not ca.verify_signed_by(inter, root_pem):
            key_pem, csr = intermediate.make_intermediate_csr(cluster_id)
            inter = str(await self._call(SIGN_INTERMEDIATE, {"CSR": csr, "Token": self.token}))
            intermediate.check_intermediate(inter, key_pem, root_pem, cluster_id)
            await self._apply({"Op": ca_fsm.OP_SET_PROVIDER_STATE, "ProviderState": {
                "ID": pid, "PrivateKey": key_pem, "RootCert": root_pem,
                "IntermediateCert": inter}})
            log.info("received new intermediate certificate from primary datacenter"
                     "{why}", why=" (renewal at half its lifetime)" if renew else "")
        desired = []
        for r in roots:
            local = {k: v for k, v in r.items() if k not in ("CreateIndex", "ModifyIndex")}
            if r is active:
                local["IntermediateCerts"] = [*(r.get("IntermediateCerts") or []), inter]
                local["SigningKeyID"] = intermediate.intermediate_key_id(inter)
            desired.append(local)
        _, current = state.ca_roots(None)
        if _view(current) != _view(desired):
            cas = state.max_index(CA_ROOTS)
            ok = await self._apply({"Op": ca_fsm.OP_SET_ROOTS, "Index": cas, "Roots": desired})
            if not ok:
                raise CAError("could not atomically update roots and config")
            log.info("updated root certificates from primary datacenter")
        self.synced += 1


def _view(roots: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(r.get(k)) for k in _COMPARED) for r in roots)
