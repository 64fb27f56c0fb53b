# -*- test-case-name: tests.unit.snapshot.test_snapshot_server -*-
"""The server side of snapshots: save and restore of this datacenter's state through raft.

:class:`SnapshotServer.handle` is the reference's dispatch for one request (header + archive):

1. another datacenter: forwarded to one of its servers (through the mesh gateways when
   federation uses them): ``No path to datacenter``;
2. not ``AllowStale`` and not the leader: forwarded to the leader (``No cluster leader``);
3. ACLs: the token needs ``acl = "write"`` (management tokens have it): ``Permission denied``;
4. save: unless stale, a consistent-read check; then the whole state store as of the last
   applied index, in an archive (:mod:`wanfedtx.snapshot.archive`); reply ``Index`` = that index;
5. restore: ``stale not allowed for restore``; the archive is checked (checksums) before anything
   is written, then applied as one raft command (type :data:`RESTORE_TYPE`), so every server of
   the datacenter replaces its state store at the same log index. The command carries the
   compressed archive and must fit in ``limits.raft_max_entry_size``.

Every failure is a reply whose ``Error`` is the one-line text; ``handle`` never fails.
:class:`SnapshotHandler` serves the stream (:mod:`wanfedtx.snapshot.stream`) on the RPC port.

Restored rows keep their raft indexes unless they are above the index of the restore command (a
datacenter rebuilt from empty servers): those are lowered to it, so every later write has a
higher index than anything in the store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.acl.remote import authorize
from wanfedtx.fsm.commands import encode
from wanfedtx.fsm.machine import FSM
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.interfaces import ConnectionInfo
from wanfedtx.rpc.rejections import peer_address
from wanfedtx.snapshot.archive import (
    ArchiveError,
    SnapshotMeta,
    read_archive,
    snapshot_id,
    write_archive,
)
from wanfedtx.snapshot.stream import (
    OP_RESTORE,
    OP_SAVE,
    RequestReader,
    StreamError,
    encode_response,
    response_header,
)
from wanfedtx.state import snapshot as state_stream
from wanfedtx.state.base import INDEX_TABLE
from wanfedtx.state.errors import StateError
from wanfedtx.state.table import Row

log = Logger(namespace="wanfedtx.rpc")

# Raft command type of a restore (not one of the reference's types, and without the
# ignore-unknown flag: a server that cannot apply it must stop, not diverge).
RESTORE_TYPE = 120
ERR_STALE_RESTORE = "stale not allowed for restore"
ERR_PERMISSION_DENIED = "Permission denied"
MSG_RPC_ERROR = "Snapshot RPC error: from={peer} error={error}"
REASON_BAD_STREAM = "snapshot-stream"
REASON_TIMEOUT = "snapshot-timeout"
# A client must keep sending its request: no byte for this long closes the connection.
DEFAULT_IDLE_TIMEOUT = 30.0

Reply = tuple[dict[str, Any], bytes]


class IConsensus(Protocol):
    def apply(self, command: bytes) -> Deferred[tuple[int, Any]]: ...

    def is_leader(self) -> bool: ...

    def verify_leader(self) -> Deferred[None]: ...

    def last_contact(self) -> float: ...

    def leader_address(self) -> str: ...


class IForward(Protocol):
    def to_leader(self, header: dict[str, Any], archive: bytes) -> Any: ...

    def to_dc(self, dc: str, header: dict[str, Any], archive: bytes) -> Any: ...


class SnapshotError(Exception):
    """A snapshot request refused; the message is the reply's ``Error``."""


class SnapshotServer:
    """Saves and restores this server's datacenter (see the module docstring)."""

    def __init__(
        self,
        *,
        datacenter: str,
        fsm: FSM,
        consensus: IConsensus,
        forward: IForward | None,
        resolver: Any,
        clock: IReactorTime,
        max_restore_bytes: int,
        rng: random.Random | None = None,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.datacenter = datacenter
        self.fsm = fsm
        self.consensus = consensus
        self.forward = forward
        self.resolver = resolver
        self.clock = clock
        self.max_restore_bytes = max_restore_bytes
        self.rng = rng if rng is not None else random.Random()
        self.requests = metrics.counter(
            "snapshot.requests", "Snapshot requests served, by op and outcome",
            ("op", "status"))

    def register_fsm(self) -> None:
        """Add the restore command to the FSM (every server, so the log replays)."""
        self.fsm.register_handler(RESTORE_TYPE, self._apply_restore)

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, header: dict[str, Any], archive: bytes) -> Deferred[Reply]:
        """One request; errors come back as the reply's ``Error`` (never as a failure)."""
        op = header.get("Op", OP_SAVE)
        name = "restore" if op == OP_RESTORE else "save"

        def done(reply: Reply) -> Reply:
            self.requests.inc(op=name, status="error" if reply[0].get("Error") else "ok")
            return reply

        def failed(f: Failure) -> Reply:
            self.requests.inc(op=name, status="error")
            return response_header(error=str(f.value) or f.getErrorMessage()), b""

        d = Deferred.fromCoroutine(self._dispatch(header, archive))
        return d.addCallbacks(done, failed)

    async def _dispatch(self, header: dict[str, Any], archive: bytes) -> Reply:
        dc = header.get("Datacenter") or self.datacenter
        stale = bool(header.get("AllowStale"))
        op = header.get("Op", OP_SAVE)
        if dc != self.datacenter:
            if self.forward is None:
                raise SnapshotError("No path to datacenter")
            reply: Reply = await self.forward.to_dc(dc, header, archive)
            return reply
        if not stale and not self.consensus.is_leader():
            if self.forward is None or not self.consensus.leader_address():
                raise SnapshotError("No cluster leader")
            reply = await self.forward.to_leader(header, archive)
            return reply
        await self._check_acl(header.get("Token") or "")
        if op == OP_SAVE:
            return await self._save(stale)
        if op == OP_RESTORE:
            if stale:
                raise SnapshotError(ERR_STALE_RESTORE)
            return await self._restore(archive)
        raise SnapshotError(f"unrecognized snapshot op {op!r}")

    async def _check_acl(self, token: Any) -> None:
        resolver = self.resolver
        if resolver is None or not resolver.enabled:
            return
        secret = token if isinstance(token, str) else "\x00"
        authz: Any = authorize(resolver, secret, self.clock.seconds())
        if isinstance(authz, Deferred):
            authz = await authz
        if not authz.acl_write():
            raise SnapshotError(ERR_PERMISSION_DENIED)

    def _meta(self) -> tuple[float, bool]:
        if self.consensus.is_leader():
            return 0.0, True
        return self.consensus.last_contact(), bool(self.consensus.leader_address())

    async def _save(self, stale: bool) -> Reply:
        if not stale:
            await self.consensus.verify_leader()
        last_contact, known_leader = self._meta()
        archive, meta = self.save_archive()
        reply = response_header(index=meta.index, last_contact=last_contact,
                                known_leader=known_leader)
        return reply, archive

    def save_archive(self) -> tuple[bytes, SnapshotMeta]:
        """The archive of the state store as of now (the last applied index)."""
        state = b"".join(self.fsm.snapshot())
        index = self.fsm.last_applied
        term, voters, config_index = self._raft_info()
        now = self.clock.seconds()
        meta = SnapshotMeta(id=snapshot_id(term, index, now), index=index, term=term,
                            size=len(state), voters=tuple(voters),
                            configuration_index=config_index)
        return write_archive(meta, state, mtime=now, rng=self.rng), meta

    def _raft_info(self) -> tuple[int, list[str], int]:
        stats = getattr(self.consensus, "stats", None)
        term = 0
        if callable(stats):
            try:
                term = int(stats().get("term", "0"))
            except ValueError:
                term = 0
        configuration = getattr(self.consensus, "configuration", None)
        if callable(configuration):
            config_index, voters = configuration()
            return term, list(voters), int(config_index)
        peers = getattr(self.consensus, "peers", None)
        return term, list(peers()) if callable(peers) else [], 0

    async def _restore(self, archive: bytes) -> Reply:
        try:
            read_archive(archive)
        except ArchiveError as exc:
            raise SnapshotError(str(exc)) from None
        command = encode(RESTORE_TYPE, {"Archive": archive})
        if len(command) > self.max_restore_bytes:
            raise SnapshotError(
                f"snapshot archive is {len(archive)} bytes; a restore is one raft entry of at "
                f"most {self.max_restore_bytes} bytes (limits.raft_max_entry_size)")
        index, result = await self.consensus.apply(command)
        if isinstance(result, Exception):
            raise SnapshotError(str(result))
        log.info("snapshot: restored the state store at raft index {index}", index=index)
        return response_header(index=index, known_leader=True), b""

    # -- the raft command ------------------------------------------------------------------

    def _apply_restore(self, index: int, body: Any) -> Any:
        archive = body.get("Archive") if isinstance(body, dict) else None
        if not isinstance(archive, bytes):
            return SnapshotError("restore command without an archive")
        try:
            meta, state = read_archive(archive)
            records = list(state_stream.decode([state]))
        except (ArchiveError, StateError) as exc:
            return SnapshotError(f"failed to read snapshot file: {exc}")
        lowered = meta.index > index
        self.fsm.state.restore_records(_clamped(records, index, set(self.fsm.state.tables)))
        if lowered:
            log.warn("snapshot: the restored snapshot's index {snap} is above this log's "
                     "{index}; its raft indexes were lowered to {index}",
                     snap=meta.index, index=index)
        return None


def _clamped(records: list[tuple[str, Row]], index: int, tables: set[str]
             ) -> Iterator[tuple[str, Row]]:
    for name, row in records:
        if name == INDEX_TABLE:
            if row.get("Key") in tables and isinstance(row.get("Value"), int) \
                    and row["Value"] > index:
                row = {**row, "Value": index}
        else:
            for key in ("CreateIndex", "ModifyIndex"):
                value = row.get(key)
                if isinstance(value, int) and value > index:
                    row = {**row, key: index}
        yield name, row


# -- the RPC port handler -------------------------------------------------------------------


class SnapshotHandler:
    """``IRPCHandler`` for type byte 5 and ALPN ``consul/rpc-snapshot``."""

    def __init__(self, server: SnapshotServer, rate_log: RateLimitedLog, *,
                 max_archive: int, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.server = server
        self.rate_log = rate_log
        self.max_archive = max_archive
        self.idle_timeout = idle_timeout

    def build_protocol(self, conn: ConnectionInfo) -> SnapshotConnection:
        return SnapshotConnection(self)


@implementer(IHalfCloseableProtocol)
class SnapshotConnection(TwistedProtocol):
    """One snapshot request on the RPC port: read it, dispatch it, write the reply, close."""

    def __init__(self, handler: SnapshotHandler) -> None:
        self.handler = handler
        self.reader = RequestReader(handler.max_archive, handler.max_archive * 16)
        self._timer: IDelayedCall | None = None
        self._state = "reading"  # reading -> dispatched -> closed

    def connectionMade(self) -> None:
        self._arm()

    def _arm(self) -> None:
        clock = self.handler.server.clock
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.handler.idle_timeout)
        else:
            self._timer = clock.callLater(self.handler.idle_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:
        if self._state != "reading":
            return
        try:
            self.reader.feed(data)
        except StreamError as exc:
            self._refuse(str(exc))
            return
        if self.reader.done:
            self._dispatch()
        else:
            self._arm()

    def readConnectionLost(self) -> None:
        if self._state != "reading":
            return
        try:
            self.reader.end_of_input()
        except StreamError as exc:
            if not (self.reader.header_seen and self.reader.op == OP_RESTORE):
                self._refuse(str(exc))
                return
            # the client ended its archive early: logged, and answered with the archive's
            # own error (the write half is still open)
            self._log(REASON_BAD_STREAM, str(exc))
        self._dispatch()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._state == "reading":
            try:
                self.reader.end_of_input()
                error = "connection closed before the request was read"
            except StreamError as exc:
                error = str(exc)
            self._log(REASON_BAD_STREAM, error)
        self._state = "closed"

    def _log(self, reason: str, error: str) -> None:
        self.handler.rate_log.error(reason, MSG_RPC_ERROR, peer=peer_address(self.transport),
                                    error=error)

    def _refuse(self, error: str) -> None:
        self._disarm()
        self._state = "closed"
        self._log(REASON_BAD_STREAM, error)
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    def _timed_out(self) -> None:
        self._timer = None
        if self._state != "reading":
            return
        self._state = "closed"
        self._log(REASON_TIMEOUT,
                  f"no data for {self.handler.idle_timeout:g}s before the request was complete")
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _dispatch(self) -> None:
        self._disarm()
        self._state = "dispatched"
        r = self.reader
        header = {"Datacenter": r.datacenter, "Token": r.token, "AllowStale": r.allow_stale,
                  "Op": r.op}
        self.handler.server.handle(header, bytes(r.archive)).addCallback(self._reply)

    def _reply(self, reply: Reply) -> None:
        if self._state == "closed" or self.transport is None:
            return
        header, archive = reply
        transport: Any = self.transport
        transport.write(encode_response(header, archive))
        transport.loseConnection()
        self._state = "closed"
