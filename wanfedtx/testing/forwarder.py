# -*- test-case-name: tests.unit.testing,tests.unit.federation -*-
"""Fake RPC forwarders for tests (the ``forwarder`` the catalog endpoints take).

- :class:`FakeForwarder` serves ``forward_dc`` from in-process servers by datacenter (anything
  with ``rpc(method, args) -> Deferred``, e.g. ``CatalogAgent``); a datacenter missing from
  ``servers`` or listed in ``down`` fails with ``NoDCPath`` ("No path to datacenter"). Each call
  is recorded in ``calls``; ``wire`` (optional) is applied to the arguments and the reply, e.g. a
  msgpack round trip so the test sees what a real wire would carry.
- :class:`ScriptedForwarder` fails ``forward_to_leader`` with scripted errors, then answers
  ``True``: a follower during an election.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed

from wanfedtx.rpc.errors import NoDCPath


class RPCServer(Protocol):
    """What :class:`FakeForwarder` needs from a datacenter's server."""

    def rpc(self, method: str, args: Any = None) -> Deferred[Any]: ...


class FakeForwarder:
    """Forwards ``forward_dc`` to ``servers[dc].rpc``; every datacenter always has a leader."""

    def __init__(
        self,
        servers: Mapping[str, RPCServer],
        *,
        down: set[str] | None = None,
        calls: list[tuple[str, str]] | None = None,
        wire: Callable[[Any], Any] | None = None,
    ) -> None:
        self.servers = servers
        self.down = down if down is not None else set()
        self.calls = calls if calls is not None else []
        self.wire = wire

    def datacenters(self) -> list[str]:
        return sorted(dc for dc in self.servers if dc not in self.down)

    def forward_dc(self, dc: str, method: str, args: Any = None) -> Deferred[Any]:
        if dc not in self.servers or dc in self.down:
            return fail(NoDCPath())
        self.calls.append((dc, method))
        if self.wire is None:
            return self.servers[dc].rpc(method, args)
        return self.servers[dc].rpc(method, self.wire(args)).addCallback(self.wire)

    def forward_to_leader(self, method: str, args: Any = None) -> Deferred[Any]:
        raise NotImplementedError("single-server test datacenters always have a leader")


class ScriptedForwarder:
    """Fails ``forward_to_leader`` with the scripted errors, then answers ``True``."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def datacenters(self) -> list[str]:
        return []

    def forward_to_leader(self, method: str, args: Any = None) -> Deferred[Any]:
        self.calls += 1
        if self.errors:
            return fail(self.errors.pop(0))
        return succeed(True)

    def forward_dc(self, dc: str, method: str, args: Any = None) -> Deferred[Any]:
        raise NotImplementedError("a scripted forwarder only forwards to the leader")
