# -*- test-case-name: tests.unit.client.test_client_rpc -*-
"""A client agent's RPC: every call goes to one server of its datacenter (Consul's
``Client.RPC``).

:meth:`ClientRPC.rpc` has the signature of the servers' in-process RPC table (``method, args ->
Deferred``), so the HTTP API, anti-entropy and the gateway watches run unchanged on a client.
A call:

1. starts the hold clock (``performance.rpc_hold_timeout``, default 7 s);
2. takes the first server of the :class:`~wanfedtx.client.router.ServerManager`; none answers
   ``No known Consul servers`` at once;
3. takes a token from ``limits.rpc_rate`` / ``limits.rpc_max_burst`` (none: ``RPC rate limit
   exceeded``, ``client.rpc.exceeded``);
4. counts ``client.rpc`` and calls the server through the connection pool (the agent's own
   datacenter selects the TLS settings; ``?dc=`` travels in the arguments and the server forwards
   it), with the pool's deadline for blocking queries;
5. on error: logs ``RPC failed to server`` (rate-limited), counts ``client.rpc.failed`` (label
   ``server``), moves that server to the back, and retries after a random pause of up to
   hold/16 while the hold time lasts, when retrying is safe: the server knew no leader, the
   server could not be reached (nothing was sent), or a read lost its connection. A write that
   lost its connection is not retried (it may have been applied).

Errors carry Consul's texts: ``rpc error getting client: <dial error>`` and
``rpc error making call: <server error>``.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wanfedtx.client.errors import ClientRPCError, NoServers, RateExceeded
from wanfedtx.client.router import ServerManager, address_of
from wanfedtx.metrics import REGISTRY, Registry
from wanfedtx.ratelog import RateLimitedLog
from wanfedtx.rpc.errors import ConnectionClosed, DialError, RemoteError
from wanfedtx.rpc.forward import call_deadline
from wanfedtx.rpc.hold import Holds

log = Logger(namespace="agent.client")

Args = dict[str, Any]
DEFAULT_HOLD_TIMEOUT = 7.0
NO_LEADER = "No cluster leader"
WRITE_SUFFIXES = (".Apply", ".Register", ".Deregister")
"""RPC methods that change state (Consul's ``WriteRequest``s); every other one is a read."""


class IPool(Protocol):
    """What the client needs from the connection pool (``wanfedtx.rpc.pool.ConnPool``)."""

    def rpc(self, dc: str, node_name: str, addr: str, method: str, args: Any = None,
            use_tls: bool = True, timeout: float | None = None) -> Deferred[Any]: ...


def is_write(method: str) -> bool:
    return method.endswith(WRITE_SUFFIXES)


def can_retry(method: str, exc: BaseException) -> bool:
    """Consul's ``canRetry``, plus dial failures (the request never left this agent)."""
    if NO_LEADER in str(exc):
        return True
    if isinstance(exc, DialError):
        return True
    return not is_write(method) and isinstance(exc, ConnectionClosed)


def wrap(exc: Exception) -> Exception:
    """The error a client answers with, in Consul's words."""
    if isinstance(exc, ClientRPCError):
        return exc
    if isinstance(exc, DialError):
        return ClientRPCError(f"rpc error getting client: {exc}")
    if isinstance(exc, RemoteError | ConnectionClosed):
        return ClientRPCError(f"rpc error making call: {exc}")
    return exc


class TokenBucket:
    """``limits.rpc_rate`` tokens per second, at most ``burst`` saved (infinite rate: no
    limit)."""

    def __init__(self, rate: float, burst: int, clock: IReactorTime) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.at = clock.seconds()

    def allow(self) -> bool:
        if self.rate == float("inf"):
            return True
        now = self.clock.seconds()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ClientRPC:
    """Sends RPCs of a client agent to its datacenter's servers (see module)."""

    def __init__(
        self,
        servers: ServerManager,
        pool: IPool,
        datacenter: str,
        clock: IReactorTime,
        *,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
        rate: float = float("inf"),
        burst: int = 1000,
        rng: random.Random | None = None,
        metrics: Registry = REGISTRY,
    ) -> None:
        self.servers = servers
        self.pool = pool
        self.datacenter = datacenter
        self.clock = clock
        self.hold_timeout = hold_timeout
        self.limiter = TokenBucket(rate, burst, clock)
        self.rng = rng if rng is not None else random.Random()
        self.ratelog = RateLimitedLog(log, clock)
        self.holds = Holds(clock)
        self._calls = metrics.counter("client.rpc", "RPCs a client agent sent to servers")
        self._exceeded = metrics.counter(
            "client.rpc.exceeded", "Client RPCs refused by limits.rpc_rate")
        self._failed = metrics.counter(
            "client.rpc.failed", "Client RPCs that failed at a server", ("server",))

    def rpc(self, method: str, args: Args) -> Deferred[Any]:
        """Call ``method`` on a server of this datacenter (see module)."""
        return Deferred.fromCoroutine(self._call(method, args))

    async def _call(self, method: str, args: Args) -> Any:
        first = self.clock.seconds()
        while True:
            server = self.servers.find_server()
            if server is None:
                raise NoServers()
            if not self.limiter.allow():
                self._exceeded.inc()
                raise RateExceeded()
            self._calls.inc()
            to = address_of(server)
            try:
                return await self.pool.rpc(self.datacenter, to.name, to.addr, method, args,
                                           timeout=call_deadline(args))
            except CancelledError:
                raise
            except Exception as exc:
                self.ratelog.error("rpc-failed",
                                   "RPC failed to server: method={method} server={server} "
                                   "error={error}", method=method, server=to.addr,
                                   error=str(exc) or repr(exc))
                self._failed.inc(server=server.name)
                self.servers.notify_failed_server(server)
                elapsed = self.clock.seconds() - first
                if not can_retry(method, exc) or elapsed >= self.hold_timeout:
                    raise wrap(exc) from exc
                pause = self.rng.random() * self.hold_timeout / 16
                if not await self.holds.pause(max(pause, 0.001)):
                    raise wrap(exc) from exc  # the agent is stopping

    def stop(self) -> None:
        """On agent stop: held requests fail now (``Holds``); pending rate-limited log
        summaries are written."""
        self.holds.stop()
        self.ratelog.stop()
