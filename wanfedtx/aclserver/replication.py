# -*- test-case-name: tests.unit.acl.test_acl_replication -*-
"""ACL replication: a secondary's leader copies the primary's policies and global tokens.

One round, as Consul's (policies, then tokens): list the primary's items (``ACL.PolicyList``,
``ACL.TokenList`` with the replication token), compare with the local ones by ID and ``Hash``,
read what is new or changed in batches (``ACL.PolicyBatchRead``, ``ACL.TokenBatchRead``; the
token read needs ``acl:write``, since secrets are hidden otherwise), then delete what the primary
no longer has and upsert the rest through this datacenter's raft. Local tokens are never
touched. Rounds run every ``interval`` seconds; an error sets ``LastError`` and backs off
``2^n`` seconds up to 64. The routine idles while ``acl.tokens.replication`` is empty.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from wanfedtx.aclserver.endpoints import rfc3339
from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.commands import MessageType
from wanfedtx.services import Service

log = Logger(namespace="agent.server.replication.acl")

REPLICATION_INTERVAL = 1.0  # Consul's ACLReplicationRate: 1 round/s
MAX_BACKOFF = 64.0
BATCH = 256
UNSET = "0001-01-01T00:00:00Z"


class ACLReplicator(Service):
    """Leader routine of a secondary (see the module docstring)."""

    def __init__(
        self,
        endpoints: Endpoints,
        primary_datacenter: str,
        token: str,
        status: dict[str, Any],
        interval: float = REPLICATION_INTERVAL,
    ) -> None:
        self.setName("ACL replication")
        self.endpoints = endpoints
        self.primary = primary_datacenter
        self.token = token
        self.status = status
        self.interval = interval
        self.failures = 0
        self._call: IDelayedCall | None = None
        self._round: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        if not self.token:
            log.warn("acl: replication is idle: acl.tokens.replication is not set")
            return
        self.status.update(
            Enabled=True, Running=True, SourceDatacenter=self.primary, ReplicationType="tokens"
        )
        self._schedule(0)

    def set_token(self, token: str) -> None:
        """A new ``acl.tokens.replication`` (``PUT /v1/agent/token/replication``): an empty one
        idles the routine at its next round; a new one starts a round now (an idle routine
        resumes, one waiting out a backoff retries at once)."""
        self.token = token
        if not token or not self.running:
            return
        if self._round is not None and not self._round.called:
            return  # a round is running: the next one uses the new token
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.status.update(
            Enabled=True, Running=True, SourceDatacenter=self.primary, ReplicationType="tokens"
        )
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self.endpoints.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._call = None
        if not self.token:
            self.status["Running"] = False
            log.warn("acl: replication is idle: acl.tokens.replication is not set")
            return
        d = Deferred.fromCoroutine(self.replicate_once())
        self._round = d
        d.addCallbacks(self._ok, self._failed)

    def _ok(self, _: object) -> None:
        self.failures = 0
        self.status["LastSuccess"] = rfc3339(float(self.endpoints.clock.seconds()))
        self._schedule(self.interval)

    def _failed(self, failure: Any) -> None:
        if failure.check(CancelledError):
            return
        self.failures += 1
        self.status["LastError"] = rfc3339(float(self.endpoints.clock.seconds()))
        self.status["LastErrorMessage"] = failure.getErrorMessage()
        log.warn(
            "ACL replication error (will retry if still leader): {error}",
            error=failure.getErrorMessage(),
        )
        self._schedule(min(MAX_BACKOFF, 2.0 ** min(self.failures, 6)))

    async def _remote(self, method: str, **extra: Any) -> Any:
        forwarder = self.endpoints.forwarder
        if forwarder is None:
            raise RuntimeError("no path to the primary datacenter (no RPC forwarder)")
        args = {"Datacenter": self.primary, "Token": self.token, "AllowStale": True, **extra}
        return await forwarder.forward_dc(self.primary, method, args)

    async def replicate_once(self) -> None:
        """One round of policies, then global tokens."""
        state = self.endpoints.state
        reply = await self._remote("ACL.PolicyList")
        remote = {p["ID"]: p for p in reply.get("Policies") or []}
        local = {p["ID"]: p for p in state.acl_policy_list(None)[1]}
        await self._sync(
            remote,
            local,
            "ACL.PolicyBatchRead",
            "PolicyIDs",
            "Policies",
            MessageType.ACL_POLICY_SET,
            MessageType.ACL_POLICY_DELETE,
            "PolicyIDs",
        )
        self.status["ReplicatedIndex"] = int(reply.get("Index") or 0)
        reply = await self._remote("ACL.TokenList", GlobalOnly=True)
        remote = {t["AccessorID"]: t for t in reply.get("Tokens") or [] if not t.get("Local")}
        local = {t["AccessorID"]: t for t in state.acl_token_list(None, local=False)[1]}
        await self._sync(
            remote,
            local,
            "ACL.TokenBatchRead",
            "AccessorIDs",
            "Tokens",
            MessageType.ACL_TOKEN_SET,
            MessageType.ACL_TOKEN_DELETE,
            "TokenIDs",
        )
        self.status["ReplicatedTokenIndex"] = int(reply.get("Index") or 0)

    async def _sync(
        self,
        remote: dict[str, Any],
        local: dict[str, Any],
        batch_read: str,
        ids_field: str,
        items_field: str,
        set_type: int,
        delete_type: int,
        delete_field: str,
    ) -> None:
        deletes = sorted(set(local) - set(remote))
        changed = sorted(
            i for i, r in remote.items() if local.get(i, {}).get("Hash") != r.get("Hash")
        )
        for start in range(0, len(changed), BATCH):
            ids = changed[start : start + BATCH]
            reply = await self._remote(batch_read, **{ids_field: ids})
            rows = [dict(r) for r in reply.get(items_field) or []]
            for row in rows:
                row.pop("CreateIndex", None)
                row.pop("ModifyIndex", None)
                if row.get("SecretID") == "<hidden>":
                    raise RuntimeError(
                        "failed to retrieve unredacted tokens - replication token in use does "
                        "not grant acl:write"
                    )
                if "Policies" in row:
                    row["Policies"] = [{"ID": p["ID"]} for p in row["Policies"]]
            if rows:
                await self.endpoints._apply(set_type, {items_field: rows})
        if deletes:
            await self.endpoints._apply(delete_type, {delete_field: deletes})


def initial_status(primary: str) -> dict[str, Any]:
    return {
        "Enabled": False,
        "Running": False,
        "SourceDatacenter": primary,
        "ReplicationType": "",
        "ReplicatedIndex": 0,
        "ReplicatedRoleIndex": 0,
        "ReplicatedTokenIndex": 0,
        "LastSuccess": UNSET,
        "LastError": UNSET,
    }
