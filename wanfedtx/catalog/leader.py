# -*- test-case-name: tests.unit.federation.test_federation_leader_services -*-
"""Leader routines: the services a server runs only while it leads, and server registration.

:class:`LeaderServices` is a ``MultiService`` child of a server part (the catalog, federation
states) that watches consensus leadership: on gaining it, it builds that part's leader routines
and adds them, as children of a fresh ``MultiService`` named ``term``, to itself (so they
start); on losing it, it removes that ``MultiService`` (so they stop, in reverse start order).
Its ``stopService``, like every routine's, returns a Deferred that fires once the routines have
stopped.

The reference's leader reconciles every LAN member; for a server it registers the node, the
service ``consul`` (ID ``consul``) on the server RPC port, and the check ``serfHealth``
("Serf Health Status", passing, "Agent alive and reachable"). Until gossip exists, each leader
reconciles itself (:class:`ServerRegistration`, a leader routine); gossip will call
:func:`reconcile_server` for every alive server member.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from twisted.application.service import IService
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.errors import LeadershipError
from wanfedtx.services import MultiService, Service

log = Logger(namespace="agent.server.leader")

CONSUL_SERVICE_ID = "consul"
CONSUL_SERVICE_NAME = "consul"
SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_CHECK_ALIVE_OUTPUT = "Agent alive and reachable"


def server_register_request(
    node: str, address: str, port: int, datacenter: str, node_id: str = ""
) -> dict[str, Any]:
    return {
        "Datacenter": datacenter,
        "ID": node_id,
        "Node": node,
        "Address": address,
        "Service": {
            "ID": CONSUL_SERVICE_ID,
            "Service": CONSUL_SERVICE_NAME,
            "Port": port,
        },
        "Check": {
            "Node": node,
            "CheckID": SERF_CHECK_ID,
            "Name": SERF_CHECK_NAME,
            "Status": "passing",
            "Output": SERF_CHECK_ALIVE_OUTPUT,
        },
        "SkipNodeUpdate": False,
    }


async def reconcile_server(
    endpoints: Endpoints, node: str, address: str, port: int, node_id: str = ""
) -> bool:
    """Register ``node`` as a server unless the catalog already says exactly that.

    Returns True when a write was made. Only the leader may call this.
    """
    state = endpoints.state
    _, services = state.node_services(None, node)
    _, checks = state.node_checks(None, node)
    if services is not None:
        node_row, svcs = services
        consul = [s for s in svcs if s["ID"] == CONSUL_SERVICE_ID]
        serf = [c for c in checks if c["CheckID"] == SERF_CHECK_ID]
        if (
            node_row["Address"] == address
            and consul
            and consul[0]["Port"] == port
            and serf
            and serf[0]["Status"] == "passing"
        ):
            return False
    req = server_register_request(node, address, port, endpoints.datacenter, node_id)
    await endpoints.catalog_register(req)
    return True


class LeadershipSource(Protocol):
    """Who tells leadership changes (``Consensus``, the raft service)."""

    def add_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...

    def remove_leadership_observer(self, observer: Callable[[bool], None]) -> None: ...


class LeaderServices(MultiService):
    """Runs ``build()``'s services while ``consensus`` says this server leads (see module)."""

    def __init__(
        self,
        consensus: LeadershipSource,
        build: Callable[[], Iterable[Service]],
        name: str = "leader",
    ) -> None:
        super().__init__()
        self.setName(name)
        self.consensus = consensus
        self.build = build
        #: The routines of the current leadership term, a child while leading.
        self.term: MultiService | None = None
        self._stopping: list[Deferred[None]] = []
        #: Whether ``leadership_changed`` is registered with ``consensus`` (a stop that runs twice,
        #: or without a start, must not unregister it again).
        self._observing = False

    @property
    def routines(self) -> list[IService]:
        """The routines now running (start order), empty when not leading."""
        return list(self.term) if self.term is not None else []

    def startService(self) -> None:
        super().startService()
        if not self._observing:
            self._observing = True
            self.consensus.add_leadership_observer(self.leadership_changed)

    def stopService(self) -> Deferred[None]:
        if self._observing:
            self._observing = False
            self.consensus.remove_leadership_observer(self.leadership_changed)
        self._end_term()
        stopping, self._stopping = self._stopping, []
        d: Deferred[None] = super().stopService()
        every = DeferredList([d, *stopping], consumeErrors=True)
        return every.addCallback(lambda _: None)

    def leadership_changed(self, leading: bool) -> None:
        if leading and self.running and self.term is None:
            term = MultiService()
            term.setName("term")
            for routine in self.build():
                log.debug("starting leader routine: routine={routine}", routine=routine.name)
                routine.setServiceParent(term)
            self.term = term
            term.setServiceParent(self)
        elif not leading:
            self._end_term()

    def _end_term(self) -> None:
        """Remove the term's ``MultiService``: its routines stop in reverse start order."""
        term, self.term = self.term, None
        if term is None:
            return
        d = cast("Deferred[None]", maybeDeferred(self.removeService, term))  # it flattens
        d.addErrback(
            lambda f: log.failure("leader routines failed to stop", f)
        )
        self._stopping.append(d)
        d.addBoth(self._forget, d)

    def _forget(self, result: Any, d: Deferred[None]) -> Any:
        if d in self._stopping:
            self._stopping.remove(d)
        return result


class ServerRegistration(Service):
    """Leader routine: register this server (:func:`reconcile_server`) once per term, then call
    ``then`` (the agent lets its anti-entropy retry at once); stopping cancels a registration
    still in flight and fires once it has stopped."""

    def __init__(
        self,
        endpoints: Endpoints,
        node: str,
        address: str,
        port: int,
        node_id: str = "",
        then: Callable[[], object] | None = None,
    ) -> None:
        self.setName("register this server")
        self.endpoints = endpoints
        self.node = node
        self.address = address
        self.port = port
        self.node_id = node_id
        self.then = then
        self._task: Deferred[bool] | None = None

    def startService(self) -> None:
        super().startService()
        task = Deferred.fromCoroutine(
            reconcile_server(self.endpoints, self.node, self.address, self.port, self.node_id)
        )
        self._task = task
        task.addErrback(self._failed)
        if self.then is not None:
            self.then()

    @staticmethod
    def _failed(f: Failure) -> None:
        if f.check(LeadershipError):
            log.info("leader: leadership lost before this server was registered: {error}",
                     error=f.getErrorMessage())
        elif not f.check(CancelledError):
            log.failure("leader: failed to register this server", failure=f)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        task, self._task = self._task, None
        if task is None:
            return succeed(None)
        if not task.called:
            task.cancel()
        return task.addBoth(lambda _: None)
