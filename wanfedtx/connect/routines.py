# -*- test-case-name: tests.unit.connect.test_connect_ca_rotation -*-
"""Periodic CA leader routines: ``CA root pruning`` (primary) and ``secondary cert renew
watch`` (secondary).

Both run while their server leads, every :data:`INTERVAL` seconds (one hour, as the reference),
one run at a time; a failed run is logged and the next one comes an interval later.

* :class:`RootPruning` drops roots rotated out more than 2 x ``LeafCertTTL`` ago
  (:func:`wanfedtx.connect.rotation.prune`); secondaries follow through roots replication.
* :class:`IntermediateRenewal` replaces the secondary's intermediate once more than half of its
  lifetime (``IntermediateCertTTL`` of the primary) has passed: it asks the primary for its
  roots and applies them (:meth:`SecondaryCARootWatch.refresh`), which has the new
  intermediate signed. Errors: ``error renewing intermediate certs``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.connect import rotation
from wanfedtx.connect.endpoints import ConnectCAEndpoints
from wanfedtx.connect.secondary import SecondaryCARootWatch
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.services import Service

log = Logger(namespace="agent.server.connect")

INTERVAL = 3600.0


class _Periodic(Service):
    """Run :meth:`run_once` every ``interval`` seconds, the first run an interval after start."""

    failure_message = "CA routine failed"

    def __init__(self, name: str, clock: IReactorTime, interval: float = INTERVAL) -> None:
        self.setName(name)
        self.clock = clock
        self.interval = interval
        self._call: IDelayedCall | None = None
        self._task: Deferred[None] | None = None
        #: Runs that finished without error (tests read it).
        self.runs = 0

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def _schedule(self) -> None:
        if self.running:
            self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._call = None
        task = Deferred.fromCoroutine(self._guarded(self.run_once))
        self._task = task

        def done(_: object) -> None:
            self._task = None
            self._schedule()

        task.addBoth(done)

    async def _guarded(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await fn()
            self.runs += 1
        except CancelledError:
            raise
        except LeadershipError as exc:
            log.info("CA: leadership lost: {error}", error=str(exc))
        except Exception as exc:
            log.error("{message}: {error}", message=self.failure_message,
                      error=str(exc) or type(exc).__name__)

    async def run_once(self) -> None:
        raise NotImplementedError

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        task, self._task = self._task, None
        if task is None or task.called:
            return succeed(None)
        task.cancel()
        return task.addBoth(_ignore)


def _ignore(_: Failure | None) -> None:
    return None


class RootPruning(_Periodic):
    """The primary's ``CA root pruning`` (see module)."""

    failure_message = "CA: failed to prune root certificates"

    def __init__(self, endpoints: ConnectCAEndpoints, clock: IReactorTime,
                 interval: float = INTERVAL) -> None:
        super().__init__("CA root pruning", clock, interval)
        self.endpoints = endpoints

    async def run_once(self) -> None:
        await rotation.prune(self.endpoints)


class IntermediateRenewal(_Periodic):
    """The secondary's ``secondary cert renew watch`` (see module)."""

    failure_message = "error renewing intermediate certs"

    def __init__(self, watch: SecondaryCARootWatch, clock: IReactorTime,
                 interval: float = INTERVAL) -> None:
        super().__init__("secondary cert renew watch", clock, interval)
        self.watch = watch

    async def run_once(self) -> None:
        inter = self.watch.current_intermediate()
        if inter and self.watch.needs_renewal(inter):
            await self.watch.refresh()
