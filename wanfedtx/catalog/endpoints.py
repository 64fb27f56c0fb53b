# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""RPC-side endpoints: Catalog.*, Health.*, KVS.*, Internal.ServiceDump, Status.*.

Each handler takes the request as a dict shaped like the reference's struct (``Datacenter``,
``QueryOptions`` fields flattened as Go's msgpack does: ``MinQueryIndex``, ``MaxQueryTime``
in nanoseconds, ``AllowStale``, ``RequireConsistent``, ``Token``) and returns a Deferred with the
reply dict. Requests for another datacenter and writes on a follower go through the
:class:`Forwarder` hooks; reads honour the default, stale and consistent modes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorTime

from wanfedtx.catalog import structs
from wanfedtx.catalog.args import _has_tags, _query_key, _str, _tags, _uint
from wanfedtx.catalog.errors import (
    BadRequestError,
    NoLeaderError,
    NoPathToDatacenterError,
    NotReadyError,
)
from wanfedtx.fsm import commands
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.consensus import Consensus
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.rpc.errors import ConnectionClosed, DialError, NoLeader, RemoteError
from wanfedtx.rpc.hold import Holds
from wanfedtx.state import StateStore, WatchSet
from wanfedtx.state.blocking import BlockingQuery, WaitGroups
from wanfedtx.state.catalog import HEALTH_ANY, HEALTH_STATES
from wanfedtx.state.timers import TimerQueue

Args = dict[str, Any]
Handler = Callable[[Args], Deferred[Any]]

NANOSECOND = 1e-9
DEFAULT_HOLD_TIMEOUT = 7.0  # Consul's performance.rpc_hold_timeout


def _leader_retryable(exc: Exception, write: bool) -> bool:
    """May a request that failed this way be sent to the leader again?

    No leader known here or at the server we reached, or the leader could not be dialed (the
    request was never sent): always. The connection closed before the answer: only for reads,
    since a write may have been applied."""
    if isinstance(exc, NoLeader | NoLeaderError | DialError | ConnectError):
        return True
    if isinstance(exc, RemoteError) and str(exc) == NoLeader().args[0]:
        return True
    return not write and isinstance(exc, ConnectionClosed)


class Forwarder(Protocol):
    """How requests reach other servers (``wanfedtx.rpc.forward.Forwarder`` implements it).

    A forwarder may also have ``datacenters() -> list[str]`` (every reachable datacenter);
    ``Catalog.ListDatacenters`` uses it when present.
    """

    def forward_dc(self, dc: str, method: str, args: Any = None) -> Deferred[Any]:
        """Run ``method`` on a server of ``dc``; fails with "No path to datacenter" if none."""
        ...

    def forward_to_leader(self, method: str, args: Any = None) -> Deferred[Any]:
        """Run ``method`` on this datacenter's leader."""
        ...


HandlerFn = Callable[[Args], Coroutine[Any, Any, Any] | Deferred[Any]]


def as_handler(fn: HandlerFn) -> Handler:
    """An RPC handler (always a Deferred) from a coroutine function or a Deferred-returning one;
    exceptions raised before any coroutine starts (validation) become failed Deferreds."""

    def handler(args: Args) -> Deferred[Any]:
        try:
            result = fn(args)
        except Exception as exc:
            return fail(exc)
        if isinstance(result, Deferred):
            return result
        return Deferred.fromCoroutine(result)

    return handler


class Endpoints:
    """The handlers of one server, bound to its state store and consensus."""

    def __init__(
        self,
        datacenter: str,
        state: StateStore,
        consensus: Consensus,
        clock: IReactorTime,
        rng: random.Random | None = None,
        forwarder: Forwarder | None = None,
        metrics: Registry = REGISTRY,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
    ) -> None:
        self.datacenter = datacenter
        # performance.rpc_hold_timeout: how long a request waits for a leader during elections
        self.hold_timeout = hold_timeout
        self.state = state
        self.consensus = consensus
        self.clock = clock
        # One reactor timer for the deadlines of every parked blocking query, and one watch
        # and one answer for every group of identical ones.
        self.timers = TimerQueue(clock)
        self.rng = rng if rng is not None else random.Random()
        self.waits = WaitGroups(self.timers, self.rng)
        # rpc.query (reads served here) and rpc.queries_blocking (parked now: one timer each).
        self._queries = metrics.counter("rpc.query", "Read queries served by this server")
        metrics.gauge_func(
            "rpc.queries_blocking", "Blocking queries waiting now", lambda: len(self.timers)
        )
        self.forwarder = forwarder
        # A new leader serves default reads only once the first entry of its term is applied
        # (raft's leadership observers fire True then): before that its FSM may be stale.
        self._leading = False
        self._ready_waiters: list[Deferred[None]] = []
        # requests held for a leader (performance.rpc_hold_timeout); stop() ends them
        self.holds = Holds(clock)
        consensus.add_leadership_observer(self._on_leadership)

    def stop(self) -> None:
        """The server is stopping: requests held for a leader fail now with the error they
        were held on, and reads waiting for a new leader's first entry with ``NotReadyError``."""
        self.holds.stop()
        for waiter in list(self._ready_waiters):
            waiter.cancel()

    def _on_leadership(self, leading: bool) -> None:
        self._leading = leading
        if leading:
            waiters, self._ready_waiters = self._ready_waiters, []
            for w in waiters:
                if not w.called:
                    w.callback(None)

    def _ready_or_timeout(self, seconds: float) -> Deferred[None]:
        """Fires when this server becomes a ready leader, or after ``seconds``."""
        d: Deferred[None] = Deferred()
        self._ready_waiters.append(d)
        timer = self.clock.callLater(seconds, lambda: None if d.called else d.callback(None))

        def done(result: None) -> None:
            if timer.active():
                timer.cancel()
            if d in self._ready_waiters:
                self._ready_waiters.remove(d)
            return result

        d.addBoth(done)
        return d

    def handlers(self) -> dict[str, Handler]:
        """``"Service.Method" -> handler`` for the RPC endpoint registry."""
        table: dict[str, HandlerFn] = {
            "Catalog.Register": self.catalog_register,
            "Catalog.Deregister": self.catalog_deregister,
            "Catalog.ListDatacenters": self.catalog_list_datacenters,
            "Catalog.ListNodes": self.catalog_list_nodes,
            "Catalog.ListServices": self.catalog_list_services,
            "Catalog.ServiceNodes": self.catalog_service_nodes,
            "Catalog.NodeServices": self.catalog_node_services,
            "Health.ServiceNodes": self.health_service_nodes,
            "Health.ChecksInState": self.health_checks_in_state,
            "Health.NodeChecks": self.health_node_checks,
            "Health.ServiceChecks": self.health_service_checks,
            "KVS.Apply": self.kvs_apply,
            "KVS.Get": self.kvs_get,
            "KVS.List": self.kvs_list,
            "KVS.ListKeys": self.kvs_list_keys,
            "Internal.ServiceDump": self.internal_service_dump,
            "Status.Leader": self.status_leader,
            "Status.Peers": self.status_peers,
        }
        return {name: as_handler(fn) for name, fn in table.items()}

    def register_into(self, registry: Any) -> None:
        """Add every handler to an RPC endpoint table (``wanfedtx.rpc.endpoints.Endpoints``)."""
        for name, handler in self.handlers().items():
            registry.register(name, handler)

    # -- plumbing ------------------------------------------------------------------------------

    def _target_dc(self, args: Args, route: str = "Datacenter") -> str | None:
        dc = args.get(route) or ""
        if not isinstance(dc, str):
            raise BadRequestError(f"{route} must be a string")
        if dc and dc != self.datacenter:
            return dc
        return None

    async def _forward(
        self, method: str, args: Args, write: bool, route: str = "Datacenter"
    ) -> tuple[bool, Any]:
        """(True, reply) when the request was served elsewhere, (False, None) to serve here.

        ``route`` names the field holding the datacenter that must serve the request.
        """
        dc = self._target_dc(args, route)
        if dc is not None:
            if self.forwarder is None:
                raise NoPathToDatacenterError(dc)
            return True, await self.forwarder.forward_dc(dc, method, args)
        give_up_at: float | None = None
        while True:
            if self.consensus.is_leader():
                return False, None
            if not write and args.get("AllowStale"):
                return False, None
            if self.forwarder is None:
                raise NoLeaderError()
            try:
                return True, await self.forwarder.forward_to_leader(method, args)
            except Exception as exc:
                if not _leader_retryable(exc, write):
                    raise
                now = self.clock.seconds()
                if give_up_at is None:
                    give_up_at = now + self.hold_timeout
                if now >= give_up_at:
                    raise
                # Consul's jittered stagger: a random part of hold/16, never past the hold.
                pause = min(self.rng.random() * self.hold_timeout / 16, give_up_at - now)
                if not await self.holds.pause(max(pause, 0.001)):
                    raise  # the server is stopping: the error the request was held on

    def _meta(self, index: int) -> Args:
        return {
            "Index": index,
            "KnownLeader": bool(self.consensus.leader_address()),
            "LastContact": 0
            if self.consensus.is_leader()
            else int(self.consensus.last_contact() * 1e9),
        }

    def _read(
        self,
        method: str,
        args: Args,
        query: Callable[[WatchSet | None], tuple[int, Any]],
        shape: Callable[[Any], Args],
        route: str = "Datacenter",
    ) -> Deferred[Any]:
        """Serve a read here (blocking as asked) or forward it (by the ``route`` field).

        Reads served here without ``RequireConsistent`` take no coroutine: a blocking one joins
        the :class:`WaitGroups` entry of identical reads (same method, arguments and index),
        which share one watch and one reply object (callers must not mutate replies).
        """
        min_index = _uint(args, "MinQueryIndex")
        max_time = _uint(args, "MaxQueryTime") * NANOSECOND
        dc = self._target_dc(args, route)
        if dc is not None:
            return self._forward_dc(dc, method, args)
        local = (
            (self._leading and self.consensus.is_leader()) or bool(args.get("AllowStale"))
        )
        if not local or args.get("RequireConsistent"):
            return Deferred.fromCoroutine(
                self._read_elsewhere_or_consistent(
                    method, args, min_index, max_time, query, shape, route
                )
            )
        self._queries.inc()
        answer = partial(self._shape_reply, shape)
        if min_index <= 0:
            return BlockingQuery(self.timers, self.rng, min_index, max_time, query, answer)
        return self.waits.wait(_query_key(method, args), min_index, max_time, query, answer)

    async def _read_elsewhere_or_consistent(
        self,
        method: str,
        args: Args,
        min_index: int,
        max_time: float,
        query: Callable[[WatchSet | None], tuple[int, Any]],
        shape: Callable[[Any], Args],
        route: str = "Datacenter",
    ) -> Any:
        give_up_at: float | None = None
        while True:
            forwarded, reply = await self._forward(method, args, write=False, route=route)
            if forwarded:
                return reply
            if args.get("AllowStale") or self._leading:
                break
            # the leader of a new term: wait until its first entry is applied (its FSM has
            # every acknowledged write), for at most the hold timeout
            now = self.clock.seconds()
            if give_up_at is None:
                give_up_at = now + self.hold_timeout
            if now >= give_up_at or self.holds.stopped:
                raise NotReadyError()
            try:
                await self._ready_or_timeout(give_up_at - now)
            except CancelledError:
                if not self.holds.stopped:
                    raise
                raise NotReadyError() from None
        if args.get("RequireConsistent"):
            await self.consensus.verify_leader()
        self._queries.inc()
        index, value = await BlockingQuery(self.timers, self.rng, min_index, max_time, query)
        return self._shape_reply(shape, index, value)

    def _shape_reply(self, shape: Callable[[Any], Args], index: int, value: Any) -> Args:
        reply = shape(value)
        reply.update(self._meta(index))
        return reply

    def _forward_dc(self, dc: str, method: str, args: Args) -> Deferred[Any]:
        """Another datacenter's request, forwarded as is (no coroutine on the way)."""
        if self.forwarder is None:
            raise NoPathToDatacenterError(dc)
        return self.forwarder.forward_dc(dc, method, args)

    def _apply(self, msg_type: int, body: Any) -> Deferred[Any]:
        """Commit a command through raft; fires with the FSM's result (an error it returned
        fails the Deferred)."""
        return self.consensus.apply(commands.encode(msg_type, body)).addCallback(_fsm_result)

    # -- Catalog -------------------------------------------------------------------------------

    async def catalog_register(self, args: Args) -> Any:
        forwarded, reply = await self._forward("Catalog.Register", args, write=True)
        if forwarded:
            return reply
        req = structs.decode_register_request(args)
        await self._apply(MessageType.REGISTER, req)
        return True

    async def catalog_deregister(self, args: Args) -> Any:
        forwarded, reply = await self._forward("Catalog.Deregister", args, write=True)
        if forwarded:
            return reply
        req = structs.decode_deregister_request(args)
        await self._apply(MessageType.DEREGISTER, req)
        return True

    async def catalog_list_datacenters(self, args: Args) -> Any:
        known = getattr(self.forwarder, "datacenters", None)
        if known is None:
            return [self.datacenter]
        others = sorted(dc for dc in known() if dc != self.datacenter)
        return [self.datacenter, *others]

    def catalog_list_nodes(self, args: Args) -> Deferred[Any]:
        def shape(nodes: list[Args]) -> Args:
            return {"Nodes": [structs.node_out(n) for n in nodes]}

        return self._read("Catalog.ListNodes", args, self.state.list_nodes, shape)

    def catalog_list_services(self, args: Args) -> Deferred[Any]:
        return self._read(
            "Catalog.ListServices", args, self.state.list_services, lambda s: {"Services": s}
        )

    def catalog_service_nodes(self, args: Args) -> Deferred[Any]:
        name = _str(args, "ServiceName")
        if not name:
            raise BadRequestError("Must provide service name")
        tags = _tags(args)

        def shape(rows: list[tuple[Args, Args]]) -> Args:
            return {
                "ServiceNodes": [
                    structs.service_node_out(n, s) for n, s in rows if _has_tags(s, tags)
                ]
            }

        return self._read(
            "Catalog.ServiceNodes",
            args,
            lambda ws: self.state.service_nodes(ws, name),
            shape,
        )

    def catalog_node_services(self, args: Args) -> Deferred[Any]:
        node = _str(args, "Node")
        if not node:
            raise BadRequestError("Must provide node")

        def shape(found: tuple[Args, list[Args]] | None) -> Args:
            if found is None:
                return {"NodeServices": None}
            n, svcs = found
            return {
                "NodeServices": {
                    "Node": structs.node_out(n),
                    "Services": {s["ID"]: structs.node_service_out(s) for s in svcs},
                }
            }

        return self._read(
            "Catalog.NodeServices", args, lambda ws: self.state.node_services(ws, node), shape
        )

    # -- Health --------------------------------------------------------------------------------

    def health_service_nodes(self, args: Args) -> Deferred[Any]:
        name = _str(args, "ServiceName")
        if not name:
            raise BadRequestError("Must provide service name")
        tags = _tags(args)

        def shape(rows: list[tuple[Args, Args, list[Args]]]) -> Args:
            return {
                "Nodes": [
                    structs.check_service_node_out(n, s, c)
                    for n, s, c in rows
                    if _has_tags(s, tags)
                ]
            }

        return self._read(
            "Health.ServiceNodes",
            args,
            lambda ws: self.state.check_service_nodes(ws, name),
            shape,
        )

    def _checks(self, rows: list[Args]) -> Args:
        return {"HealthChecks": [structs.check_out(c) for c in rows]}

    def health_checks_in_state(self, args: Args) -> Deferred[Any]:
        state = _str(args, "State")
        if state != HEALTH_ANY and state not in HEALTH_STATES:
            raise BadRequestError(f"Invalid state: {state!r}")
        return self._read(
            "Health.ChecksInState",
            args,
            lambda ws: self.state.checks_in_state(ws, state),
            self._checks,
        )

    def health_node_checks(self, args: Args) -> Deferred[Any]:
        node = _str(args, "Node")
        return self._read(
            "Health.NodeChecks", args, lambda ws: self.state.node_checks(ws, node), self._checks
        )

    def health_service_checks(self, args: Args) -> Deferred[Any]:
        name = _str(args, "ServiceName")
        return self._read(
            "Health.ServiceChecks",
            args,
            lambda ws: self.state.service_checks(ws, name),
            self._checks,
        )

    # -- KVS -----------------------------------------------------------------------------------

    def kvs_apply(self, args: Args) -> Deferred[Any]:
        dc = self._target_dc(args)
        if dc is not None:
            return self._forward_dc(dc, "KVS.Apply", args)
        if self.consensus.is_leader():  # the common case, without a coroutine
            return self._kvs_apply_here(args)
        return Deferred.fromCoroutine(self._kvs_apply_elsewhere(args))

    async def _kvs_apply_elsewhere(self, args: Args) -> Any:
        forwarded, reply = await self._forward("KVS.Apply", args, write=True)
        if forwarded:
            return reply
        return await self._kvs_apply_here(args)

    def _kvs_apply_here(self, args: Args) -> Deferred[Any]:
        op = _str(args, "Op")
        ent = args.get("DirEnt")
        if not isinstance(ent, dict):
            raise BadRequestError("Must provide DirEnt")
        f = structs.Fields(ent, "DirEnt")
        key = f.text("Key")
        value = ent.get("Value")
        if value is not None and not isinstance(value, bytes):
            raise BadRequestError("DirEnt: field 'Value' must be bytes")
        if op in (commands.KVS_LOCK, commands.KVS_UNLOCK):
            raise BadRequestError(
                f"KV operation {op!r} needs sessions, which this server does not implement"
            )
        if op not in commands.KVS_WRITE_OPS:
            raise BadRequestError(f"Invalid KVS operation '{op}'")
        if not key and op != commands.KVS_DELETE_TREE:
            raise BadRequestError("Must provide key")
        body = {
            "Op": op,
            "DirEnt": {
                "Key": key,
                "Value": value,
                "Flags": f.integer("Flags", 0, 0, 2**64 - 1),
                "ModifyIndex": f.integer("ModifyIndex", 0, 0, 2**64 - 1),
                "Session": f.text("Session"),
            },
        }
        d = self._apply(MessageType.KVS, body)
        if op in (commands.KVS_CAS, commands.KVS_DELETE_CAS):
            return d.addCallback(bool)  # the FSM's verdict
        return d.addCallback(lambda _: True)

    def kvs_get(self, args: Args) -> Deferred[Any]:
        key = _str(args, "Key")
        return self._read("KVS.Get", args, partial(_kv_get, self.state, key), _kv_entry)

    def kvs_list(self, args: Args) -> Deferred[Any]:
        key = _str(args, "Key")
        return self._read("KVS.List", args, partial(_kv_list, self.state, key), _kv_entries)

    def kvs_list_keys(self, args: Args) -> Deferred[Any]:
        prefix = _str(args, "Prefix")
        sep = _str(args, "Seperator")  # sic: the reference's field name
        return self._read(
            "KVS.ListKeys",
            args,
            lambda ws: self.state.kvs_list_keys(ws, prefix, sep),
            lambda keys: {"Keys": keys},
        )

    # -- Internal and Status -------------------------------------------------------------------

    def internal_service_dump(self, args: Args) -> Deferred[Any]:
        kind = _str(args, "ServiceKind")

        def shape(rows: list[tuple[Args, Args, list[Args]]]) -> Args:
            return {"Nodes": [structs.check_service_node_out(n, s, c) for n, s, c in rows]}

        return self._read(
            "Internal.ServiceDump",
            args,
            lambda ws: self.state.check_service_nodes(ws, kind=kind),
            shape,
        )

    async def _status_forward(self, method: str, args: Args) -> tuple[bool, Any]:
        dc = self._target_dc(args)
        if dc is None:
            return False, None
        if self.forwarder is None:
            raise NoPathToDatacenterError(dc)
        return True, await self.forwarder.forward_dc(dc, method, args)

    async def status_leader(self, args: Args) -> Any:
        forwarded, reply = await self._status_forward("Status.Leader", args)
        return reply if forwarded else self.consensus.leader_address()

    async def status_peers(self, args: Args) -> Any:
        forwarded, reply = await self._status_forward("Status.Peers", args)
        return reply if forwarded else self.consensus.peers()


# Module functions and partials rather than closures: parked queries keep them alive.
def _kv_get(state: StateStore, key: str, ws: WatchSet | None) -> tuple[int, Args | None]:
    return state.kvs_get(ws, key)


def _kv_list(state: StateStore, prefix: str, ws: WatchSet | None) -> tuple[int, list[Args]]:
    return state.kvs_list(ws, prefix)


def _kv_entry(row: Args | None) -> Args:
    return {"Entries": None if row is None else [structs.dir_entry_out(row)]}


def _kv_entries(rows: list[Args]) -> Args:
    return {"Entries": [structs.dir_entry_out(r) for r in rows] or None}


def _fsm_result(applied: tuple[int, Any]) -> Any:
    """The FSM's result from a raft apply's ``(index, result)``; an error it returned raises."""
    _, result = applied
    if isinstance(result, Exception):
        raise result
    return result
