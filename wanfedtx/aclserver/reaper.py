# -*- test-case-name: tests.unit.acl.test_acl_replication -*-
"""Leader routine ``acl token reaping``: delete expired tokens through raft.

The primary reaps global and local tokens, a secondary only its local ones (its global tokens
follow the primary's through replication). Every ``interval`` seconds (default 60) the leader
lists the tokens whose ``ExpirationTime`` is past and deletes them in one batch; an error is
logged and the next round tries again.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.aclserver.endpoints import rfc3339
from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.commands import MessageType
from wanfedtx.services import Service

log = Logger(namespace="agent.server.acl")

REAP_INTERVAL = 60.0


class TokenReaper(Service):
    """See the module docstring."""

    def __init__(self, endpoints: Endpoints, primary: bool, interval: float = REAP_INTERVAL):
        self.setName("acl token reaping")
        self.endpoints = endpoints
        self.primary = primary
        self.interval = interval
        self.reaped = 0
        self._call: IDelayedCall | None = None
        self._round: Deferred[int] | None = None

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        current, self._round = self._round, None
        if current is None or current.called:
            return succeed(None)
        current.cancel()
        return current.addBoth(lambda _: None)

    def _schedule(self) -> None:
        if self.running:
            self._call = self.endpoints.clock.callLater(self.interval, self._run)

    def _run(self) -> None:
        self._call = None
        d = Deferred.fromCoroutine(self.reap_once())
        self._round = d
        d.addErrback(self._failed)
        d.addBoth(lambda _: self._schedule())

    @staticmethod
    def _failed(failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.warn("acl: failed to reap expired tokens: {error}", error=failure.getErrorMessage())

    async def reap_once(self) -> int:
        """Delete the expired tokens this datacenter owns; how many."""
        now = rfc3339(float(self.endpoints.clock.seconds()))
        _, tokens = self.endpoints.state.acl_token_list(None, local=True, global_=self.primary)
        expired = [
            t["AccessorID"]
            for t in tokens
            if t.get("ExpirationTime") and str(t["ExpirationTime"]) <= now
        ]
        if expired:
            await self.endpoints._apply(MessageType.ACL_TOKEN_DELETE, {"TokenIDs": expired})
            self.reaped += len(expired)
            log.info("acl: reaped {count} expired tokens", count=len(expired))
        return len(expired)
