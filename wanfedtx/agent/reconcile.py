# -*- test-case-name: tests.unit.agent.test_agent_reconcile -*-
"""Leader routine: the catalog follows the LAN pool (Consul's leader ``reconcile``).

While a server leads, :class:`MemberReconciler` registers every LAN member that is a Consul
agent of this datacenter (``role=node``, or a valid server with the ``consul`` role) in the
catalog, with the check ``serfHealth`` (``Serf Health Status``):

* alive: ``passing``, ``Agent alive and reachable``; servers also get the service ``consul`` on
  their RPC port. Nothing is written when the node already has that address and a passing
  check (and, for a server, that ``consul`` service);
* failed: ``critical``, ``Agent not live or unreachable``;
* left or reaped: the node is deregistered (never this server itself: a leaving leader's node is
  removed by the next leader).

With raft (``raft`` given), servers are also kept in the raft configuration, as Consul's
``joinConsulServer`` / ``removeConsulServer``: an alive server of this datacenter that is not a
voter is added (not a read replica: ``nonvoter`` tag); a server that left gracefully (or was
reaped) is removed, so a 3-server datacenter where one server leaves keeps a 2-voter
configuration (quorum 2) and ``operator raft list-peers`` no longer lists it. A failed server
stays a voter (it may come back). The leader never removes itself: a leaving leader hands
leadership over and the next leader removes it. A change raft cannot make yet (one still
committing, a new leader's first entry not committed) is tried again after ``retry_interval``.

Node registrations keep what anti-entropy wrote about the node (``SkipNodeUpdate``). Member
events are queued and applied one at a time; on gaining leadership and every
``reconcile_interval`` (60 s) every member is reconciled again and catalog nodes that carry a
``serfHealth`` check but are no longer members are deregistered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.catalog.leader import (
    CONSUL_SERVICE_ID,
    SERF_CHECK_ALIVE_OUTPUT,
    SERF_CHECK_ID,
    SERF_CHECK_NAME,
    server_register_request,
)
from wanfedtx.gossip.pools import parse_server
from wanfedtx.gossip.serf import Event, Member, MemberEvent, MemberStatus
from wanfedtx.raft.errors import ConfigChangeError, RaftError
from wanfedtx.services import Service

log = Logger(namespace="agent.leader")

SERF_CHECK_FAILED_OUTPUT = "Agent not live or unreachable"
RECONCILE_INTERVAL = 60.0
RAFT_RETRY_INTERVAL = 0.5
RAFT_RETRIES = 20  # then the next full reconciliation tries again


class RaftMembership(Protocol):
    """The raft configuration the leader keeps equal to the servers (``RaftService``)."""

    def peers(self) -> list[str]: ...

    def add_voter(self, addr: str) -> Deferred[tuple[int, Any]]: ...

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]: ...

ALIVE, FAILED, LEFT, REAP = "alive", "failed", "left", "reap"


def member_kind(m: Member, datacenter: str) -> tuple[bool, int | None]:
    """(is a Consul agent of ``datacenter``, its server RPC port or None for a client)."""
    if m.tags.get("role") == "node":
        return m.tags.get("dc") == datacenter, None
    srv = parse_server(m)
    if srv is None or srv.datacenter != datacenter or m.tags.get("segment", ""):
        return False, None
    return True, srv.port


def raft_address(m: Member, port: int) -> str:
    """The server's raft address (its RPC ``host:port``, IPv6 hosts in brackets)."""
    return f"[{m.addr}]:{port}" if ":" in m.addr else f"{m.addr}:{port}"


def _action(ev_type: str, m: Member) -> str | None:
    if ev_type == "member-reap":
        return REAP
    return {MemberStatus.ALIVE: ALIVE, MemberStatus.FAILED: FAILED,
            MemberStatus.LEFT: LEFT}.get(m.status)


class MemberReconciler(Service):
    """Keeps the catalog's agent nodes equal to the LAN pool while this server leads."""

    def __init__(
        self,
        endpoints: Endpoints,
        members: Callable[[], Iterable[Member]],
        node_name: str,
        clock: IReactorTime,
        interval: float = RECONCILE_INTERVAL,
        announce: Callable[[], object] | None = None,
        raft: RaftMembership | None = None,
        retry_interval: float = RAFT_RETRY_INTERVAL,
    ) -> None:
        """``announce`` runs when leadership starts (the agent sends the LAN user event
        ``consul:new-leader``, on which clients sync at once). ``raft``: keep the servers in
        its configuration (see the module)."""
        self.setName("reconcile LAN members")
        self.endpoints = endpoints
        self.members = members
        self.node_name = node_name
        self.datacenter = endpoints.datacenter
        self.clock = clock
        self.interval = interval
        self._queue: list[tuple[str, Member] | None] = []  # None: reconcile everything
        self._worker: Deferred[None] | None = None
        self._timer: IDelayedCall | None = None
        self.announce = announce
        self.raft = raft
        self.retry_interval = retry_interval
        self._retries: dict[str, tuple[int, IDelayedCall]] = {}  # member name -> (tries, call)

    # -- lifecycle -----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.announce is not None:
            self.announce()
        self._full()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._queue.clear()
        for _, call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        worker = self._worker
        if worker is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        worker.addBoth(lambda _: done.callback(None))
        worker.cancel()
        return done

    def _full(self) -> None:
        self._timer = None
        if not self.running:
            return
        self._queue.append(None)
        self._kick()
        self._timer = self.clock.callLater(self.interval, self._full)

    # -- events --------------------------------------------------------------------------------

    def handle_event(self, ev: Event) -> None:
        """A LAN serf event (the agent calls this for every one while this routine runs)."""
        if not self.running or not isinstance(ev, MemberEvent):
            return
        for m in ev.members:
            action = _action(ev.type, m)
            if action is not None:
                self._queue.append((action, m))
        self._kick()

    def _kick(self) -> None:
        if self._worker is None and self._queue:
            worker = Deferred.fromCoroutine(self._drain())
            self._worker = worker

            def done(_: object) -> None:
                self._worker = None

            worker.addBoth(done)

    async def _drain(self) -> None:
        while self._queue and self.running:
            item = self._queue.pop(0)
            try:
                if item is None:
                    await self.reconcile_all()
                else:
                    await self.reconcile_member(*item)
            except CancelledError:
                return
            except Exception as exc:
                log.warn("failed to reconcile member: member={member} error={error}",
                         member="*" if item is None else item[1].name, error=str(exc))

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        members = list(self.members())
        names = set()
        for m in members:
            names.add(m.name.lower())
            action = _action("", m)
            if action is not None:
                await self.reconcile_member(action, m)
        state = self.endpoints.state
        _, nodes = state.list_nodes(None)
        for node in nodes:
            name = node["Node"]
            if name.lower() in names or name == self.node_name:
                continue
            _, checks = state.node_checks(None, name)
            if any(c["CheckID"] == SERF_CHECK_ID for c in checks):
                await self._deregister(name, "reaped")

    async def reconcile_member(self, action: str, m: Member) -> bool:
        """Apply one member's state; True if the catalog was written."""
        ours, port = member_kind(m, self.datacenter)
        if not ours:
            return False
        if port is not None and action != FAILED:
            await self._raft_membership(action, m, port)
        if action == ALIVE:
            return await self._alive(m, port)
        if action == FAILED:
            return await self._failed(m)
        if m.name == self.node_name:
            log.warn("deregistering self should be done by follower: name={name}", name=m.name)
            return False
        return await self._deregister(m.name, "left" if action == LEFT else "reaped")

    def _serf_check(self, node: str) -> dict[str, Any] | None:
        _, checks = self.endpoints.state.node_checks(None, node)
        return next((c for c in checks if c["CheckID"] == SERF_CHECK_ID), None)

    def _node(self, node: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        _, found = self.endpoints.state.node_services(None, node)
        return found

    async def _alive(self, m: Member, port: int | None) -> bool:
        found = self._node(m.name)
        if found is not None and found[0]["Address"] == m.addr:
            consul = [s for s in found[1] if s["ID"] == CONSUL_SERVICE_ID]
            check = self._serf_check(m.name)
            service_ok = port is None or (consul and consul[0]["Port"] == port)
            if service_ok and check is not None and check["Status"] == "passing":
                return False
        log.info("member joined, marking health alive: member={member}", member=m.name)
        node_id = m.tags.get("id", "")
        if port is not None:
            req = server_register_request(m.name, m.addr, port, self.datacenter, node_id)
        else:
            req = self._check_request(m, "passing", SERF_CHECK_ALIVE_OUTPUT)
        req["SkipNodeUpdate"] = True
        await self.endpoints.catalog_register(req)
        return True

    def _check_request(self, m: Member, status: str, output: str) -> dict[str, Any]:
        return {
            "Datacenter": self.datacenter,
            "ID": m.tags.get("id", ""),
            "Node": m.name,
            "Address": m.addr,
            "Check": {"Node": m.name, "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME,
                      "Status": status, "Output": output},
            "SkipNodeUpdate": True,
        }

    async def _failed(self, m: Member) -> bool:
        found = self._node(m.name)
        if found is not None and found[0]["Address"] == m.addr:
            check = self._serf_check(m.name)
            if check is not None and check["Status"] == "critical":
                return False
        log.info("member failed, marking health critical: member={member}", member=m.name)
        await self.endpoints.catalog_register(
            self._check_request(m, "critical", SERF_CHECK_FAILED_OUTPUT))
        return True

    async def _deregister(self, node: str, reason: str) -> bool:
        if self._node(node) is None:
            return False
        log.info("deregistering member: member={member} reason={reason}", member=node,
                 reason=reason)
        await self.endpoints.catalog_deregister({"Datacenter": self.datacenter, "Node": node})
        return True

    # -- the raft configuration ------------------------------------------------------------------

    async def _raft_membership(self, action: str, m: Member, port: int) -> None:
        """Add an alive server that is not a voter; remove one that left or was reaped."""
        raft = self.raft
        if raft is None or m.name == self.node_name:
            return
        addr = raft_address(m, port)
        voters = raft.peers()
        try:
            if action == ALIVE and addr not in voters and m.tags.get("nonvoter") != "1":
                log.info("adding server to the raft configuration: member={member} "
                         "address={address}", member=m.name, address=addr)
                await raft.add_voter(addr)
            elif action in (LEFT, REAP) and addr in voters:
                log.info("removing server from the raft configuration: member={member} "
                         "address={address} reason={reason}", member=m.name, address=addr,
                         reason="left" if action == LEFT else "reaped")
                await raft.remove_server(addr)
            else:
                self._retries.pop(m.name, None)
                return
        except ConfigChangeError as exc:
            self._retry(action, m, str(exc))
            return
        except RaftError as exc:
            log.warn("failed to change the raft configuration: member={member} error={error}",
                     member=m.name, error=str(exc))
            return
        self._retries.pop(m.name, None)

    def _retry(self, action: str, m: Member, why: str) -> None:
        """Queue ``m`` again after ``retry_interval`` (raft cannot make the change yet)."""
        tries, old = self._retries.get(m.name, (0, None))
        if old is not None and old.active():
            return
        if tries >= RAFT_RETRIES:
            log.warn("raft configuration change still refused, leaving it to the next full "
                     "reconciliation: member={member} error={error}", member=m.name, error=why)
            self._retries.pop(m.name, None)
            return

        def again() -> None:
            if self.running:
                self._queue.append((action, m))
                self._kick()

        self._retries[m.name] = (tries + 1, self.clock.callLater(self.retry_interval, again))
