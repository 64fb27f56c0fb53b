# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""Agent-to-catalog anti-entropy: push local services and checks into the catalog.

Changes are synced soon after they happen (coalesced); a full sync every ``full_interval``
seconds (plus up to 1/16 jitter) re-reads the catalog's view of this node and repairs any
difference, deregistering catalog services and checks the agent does not have (except the
server-managed ``consul`` service and ``serfHealth`` check). Failed syncs retry after 15 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wanfedtx.local.state import LocalState
from wanfedtx.services import Service

log = Logger()

Args = dict[str, Any]
RPC = Callable[[str, Args], Deferred[Any]]

CONSUL_SERVICE_ID = "consul"
SERF_CHECK_ID = "serfHealth"
RETRY_FAIL_INTERVAL = 15.0
FULL_SYNC_INTERVAL = 60.0

_NODE_SERVICE_KEYS = (
    "Kind",
    "ID",
    "Service",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Port",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
)
_CHECK_KEYS = ("CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName")


def _same(a: Args, b: Args, keys: tuple[str, ...]) -> bool:
    return all((a.get(k) or None) == (b.get(k) or None) for k in keys)


class AntiEntropy(Service):
    """Keeps the catalog entry of this node equal to the agent's local state."""

    def __init__(
        self,
        local: LocalState,
        rpc: RPC,
        node_info: Args,
        clock: IReactorTime,
        rng: random.Random | None = None,
        full_interval: float = FULL_SYNC_INTERVAL,
        agent_token: str = "",
    ) -> None:
        self.local = local
        #: ``acl.tokens.agent`` (else ``tokens.default``): the token of the node's own syncs
        #: and of entries registered without one
        self.agent_token = agent_token
        self.rpc = rpc
        self.node_info = node_info  # Node, Address, ID, Datacenter, TaggedAddresses, NodeMeta
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.full_interval = full_interval
        self._timer: IDelayedCall | None = None
        self._running: Deferred[bool] | None = None
        self._want_full = True
        self._again = False
        local.on_change(self.trigger)

    # -- service lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._want_full = True
        self._schedule(0)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running = self._running
        if running is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None))
        return done

    # -- scheduling ----------------------------------------------------------------------------

    def trigger(self) -> None:
        """Local state changed: sync soon."""
        if not self.running:
            return
        if self._running is not None:
            self._again = True
            return
        self._schedule(0)

    def sync_full(self) -> None:
        """A server appeared (a client's ``ServerUp``, a new leader): full sync at once."""
        self._want_full = True
        self.trigger()

    def _schedule(self, delay: float) -> None:
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        full = self._want_full
        self._want_full = False
        running: Deferred[bool] = Deferred.fromCoroutine(self._sync(full))
        self._running = running

        def done(ok: bool) -> None:
            self._running = None
            if not self.running:
                return
            if not ok:
                self._want_full = True
                self._schedule(RETRY_FAIL_INTERVAL)
            elif self._again:
                self._again = False
                self._schedule(0)
            else:
                self._want_full = True
                jitter = self.rng.random() * self.full_interval / 16
                self._schedule(self.full_interval + jitter)

        running.addCallback(done)

    async def _sync(self, full: bool) -> bool:
        try:
            if full:
                await self.sync_full_compare()
            await self.sync_changes()
        except Exception as exc:
            log.warn("agent: failed to sync remote state: {error}", error=str(exc) or repr(exc))
            return False
        return True

    # -- the sync itself -----------------------------------------------------------------------

    def _register_base(self) -> Args:
        info = self.node_info
        return {
            "Datacenter": info.get("Datacenter", ""),
            "ID": info.get("ID", ""),
            "Node": self.local.node,
            "Address": info["Address"],
            "TaggedAddresses": info.get("TaggedAddresses", {}),
            "NodeMeta": info.get("NodeMeta", {}),
            "Token": self.agent_token,
        }

    async def sync_full_compare(self) -> None:
        """Read the catalog's view of this node and mark every difference out of sync."""
        q = {"Datacenter": self.node_info.get("Datacenter", ""), "Node": self.local.node}
        reply = await self.rpc("Catalog.NodeServices", dict(q))
        checks_reply = await self.rpc("Health.NodeChecks", dict(q))
        ns = reply.get("NodeServices")
        remote_services: dict[str, Args] = dict((ns or {}).get("Services") or {})
        node = (ns or {}).get("Node")
        info = self.node_info
        self.local.node_in_sync = bool(
            node
            and node.get("Address") == info["Address"]
            and (node.get("Meta") or {}) == (info.get("NodeMeta") or {})
            and (node.get("TaggedAddresses") or {}) == (info.get("TaggedAddresses") or {})
        )
        for sid, entry in self.local.services.items():
            remote = remote_services.get(sid)
            if entry.deleted:
                entry.in_sync = remote is None
            else:
                entry.in_sync = remote is not None and _same(
                    remote, entry.service, _NODE_SERVICE_KEYS
                )
        for sid in remote_services:
            if sid not in self.local.services and sid != CONSUL_SERVICE_ID:
                await self._deregister(ServiceID=sid)
        remote_checks = {c["CheckID"]: c for c in checks_reply.get("HealthChecks") or []}
        for cid, check in self.local.checks.items():
            remote = remote_checks.get(cid)
            if check.deleted:
                check.in_sync = remote is None
            else:
                check.in_sync = remote is not None and _same(remote, check.check, _CHECK_KEYS)
        for cid in remote_checks:
            if cid not in self.local.checks and cid != SERF_CHECK_ID:
                await self._deregister(CheckID=cid)

    async def _deregister(self, **what: str) -> None:
        args = {
            "Datacenter": self.node_info.get("Datacenter", ""),
            "Node": self.local.node,
            "Token": self.agent_token,
            **what,
        }
        if "ServiceID" in what:
            blocked = "Service deregistration blocked by ACLs: service={service}"
        else:
            blocked = "Check deregistration blocked by ACLs: check={check}"
        await self._apply("Catalog.Deregister", args, blocked,
                          service=what.get("ServiceID", ""), check=what.get("CheckID", ""))

    async def _apply(self, method: str, args: Args, blocked: str, **fields: str) -> bool:
        """One catalog write; False when the token may not make it. As Consul's agent does, a
        write the ACLs refuse is logged (``... blocked by ACLs``) and counted as synced, so the
        agent does not retry it every 15 s; it is tried again when the entry changes or at the
        next full sync."""
        try:
            await self.rpc(method, args)
        except Exception as exc:
            text = str(exc)
            if "Permission denied" not in text and "ACL not found" not in text:
                raise
            log.warn(blocked, **fields)
            return False
        return True

    async def sync_changes(self) -> None:
        """Push every out-of-sync entry. Each RPC sends a snapshot of the entry; after the await
        an entry is marked in sync only if it is still that same snapshot, so a change that
        arrived while the RPC was in flight (a TTL update, a re-registration) is synced next."""
        local = self.local
        for sid, entry in list(local.services.items()):
            if entry.deleted and not entry.in_sync:
                await self._deregister(ServiceID=sid)
                log.info("agent: Deregistered service {service}", service=sid)
            if entry.deleted and local.services.get(sid) is entry:
                local.services.pop(sid, None)
        for cid, check in list(local.checks.items()):
            if check.deleted and not check.in_sync:
                await self._deregister(CheckID=cid)
                log.info("agent: Deregistered check {check}", check=cid)
            if check.deleted and local.checks.get(cid) is check:
                local.checks.pop(cid, None)
        for sid, entry in list(local.services.items()):
            if entry.in_sync or entry.deleted or local.services.get(sid) is not entry:
                continue
            svc_checks = [
                (c, c.check) for c in local.checks.values()
                if c.check["ServiceID"] == sid and not c.deleted
            ]
            sent_service = entry.service
            req = self._register_base()
            req["Service"] = sent_service
            req["Checks"] = [row for _, row in svc_checks]
            req["Token"] = entry.token or self.agent_token
            synced = await self._apply("Catalog.Register", req,
                                       "Service registration blocked by ACLs: service={service}",
                                       service=sid)
            if local.services.get(sid) is entry and entry.service is sent_service:
                entry.in_sync = not entry.deleted
            for c, row in svc_checks:
                if c.check is row and not c.deleted:
                    c.in_sync = True
            if synced:
                local.node_in_sync = True
                log.info("agent: Synced service {service}", service=sid)
        for cid, check in list(local.checks.items()):
            if check.in_sync or check.deleted or local.checks.get(cid) is not check:
                continue
            owner = local.services.get(check.check.get("ServiceID") or "")
            if owner is not None and not owner.in_sync:
                continue  # its service changed meanwhile; the next pass registers both
            sent_row = check.check
            req = self._register_base()
            req["Check"] = sent_row
            req["Token"] = check.token or self.agent_token
            synced = await self._apply("Catalog.Register", req,
                                       "Check registration blocked by ACLs: check={check}",
                                       check=cid)
            if check.check is sent_row and not check.deleted:
                check.in_sync = True
            if synced:
                local.node_in_sync = True
                log.info("agent: Synced check {check}", check=cid)
        if not local.node_in_sync:
            synced = await self._apply("Catalog.Register", self._register_base(),
                                       "Node info update blocked by ACLs: node={node}",
                                       node=str(self.node_info.get("ID") or local.node))
            local.node_in_sync = True
            if synced:
                log.info("agent: Synced node info")
