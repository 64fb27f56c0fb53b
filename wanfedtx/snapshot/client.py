# -*- test-case-name: tests.unit.snapshot.test_snapshot_server -*-
"""The client side of ``consul/rpc-snapshot``: one connection per call, request out, reply in.

:func:`snapshot_call` dials a server's RPC port with type byte 5 (through a mesh gateway with
ALPN ``consul/rpc-snapshot`` when the dialer routes another datacenter that way), writes the
request header and archive, half-closes when the transport can (plain TCP), and reads the reply
header and archive until the server closes. :class:`SnapshotForwarder` picks the server: this
datacenter's leader, or a server of another datacenter from the WAN router.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from wanfedtx.rpc.constants import RPCType
from wanfedtx.rpc.errors import DialError, NoDCPath, NoLeader
from wanfedtx.rpc.interfaces import ILeaderProvider, IRouter, ServerAddress
from wanfedtx.snapshot.stream import ResponseReader, StreamError, encode_request

Reply = tuple[dict[str, Any], bytes]
# A call may take a while (a large save, a restore applied through raft).
DEFAULT_CALL_TIMEOUT = 120.0


class IDialer(Protocol):
    def dial(self, dc: str, node_name: str, addr: str, rpc_type: RPCType, use_tls: bool,
             app: Any) -> Deferred[Any]: ...


class SnapshotCallError(Exception):
    """The snapshot call failed before a reply header came back."""


@implementer(IHalfCloseableProtocol)
class _CallProtocol(TwistedProtocol):
    def __init__(self, request: bytes, max_archive: int, clock: IReactorTime,
                 timeout: float) -> None:
        self.request = request
        self.reader = ResponseReader(max_archive)
        self.result: Deferred[Reply] = Deferred()
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._timed_out, timeout)
        self._error: Exception | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(self.request)
        half_close = getattr(transport, "loseWriteConnection", None)
        if half_close is not None and not hasattr(transport, "negotiatedProtocol"):
            half_close()  # plain TCP; inside TLS the archive's gzip end marks the request end

    def dataReceived(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except StreamError as exc:
            self._error = SnapshotCallError(str(exc))
            transport: Any = self.transport
            transport.abortConnection()

    def readConnectionLost(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.result.called:
            return
        if self._error is not None:
            self.result.errback(self._error)
            return
        try:
            self.result.callback(self.reader.finish())
        except StreamError as exc:
            self.result.errback(SnapshotCallError(f"{exc}: {reason.getErrorMessage()}"))

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self._error = SnapshotCallError(f"snapshot call timed out after {timeout:g}s")
        if self.transport is not None:
            transport: Any = self.transport
            transport.abortConnection()
        elif not self.result.called:
            self.result.errback(self._error)


async def snapshot_call(dialer: IDialer, clock: IReactorTime, dc: str, server: ServerAddress,
                        header: dict[str, Any], archive: bytes, *, max_archive: int,
                        timeout: float = DEFAULT_CALL_TIMEOUT) -> Reply:
    """One snapshot RPC to ``server`` of ``dc``: the reply map and the archive that followed."""
    proto = _CallProtocol(encode_request(header, archive), max_archive, clock, timeout)
    try:
        await dialer.dial(dc, server.name, server.addr, RPCType.SNAPSHOT, True, proto)
    except Exception:
        if proto._timer is not None and proto._timer.active():
            proto._timer.cancel()
        raise
    return await proto.result


class SnapshotForwarder:
    """Sends a snapshot request to this datacenter's leader or to another datacenter."""

    def __init__(self, dialer: IDialer, clock: IReactorTime, datacenter: str,
                 leader: ILeaderProvider, router: IRouter, *, max_archive: int) -> None:
        self.dialer = dialer
        self.clock = clock
        self.datacenter = datacenter
        self.leader = leader
        self.router = router
        self.max_archive = max_archive

    async def to_leader(self, header: dict[str, Any], archive: bytes) -> Reply:
        server = self.leader.leader()
        if server is None:
            raise NoLeader()
        return await snapshot_call(self.dialer, self.clock, self.datacenter, server, header,
                                   archive, max_archive=self.max_archive)

    async def to_dc(self, dc: str, header: dict[str, Any], archive: bytes) -> Reply:
        servers = list(self.router.servers_for_dc(dc))
        if not servers:
            raise NoDCPath()
        for i, server in enumerate(servers):
            try:
                return await snapshot_call(self.dialer, self.clock, dc, server, header, archive,
                                           max_archive=self.max_archive)
            except DialError:
                if i == len(servers) - 1:
                    raise
        raise NoDCPath()
