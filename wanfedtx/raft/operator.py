# -*- test-case-name: tests.unit.raft.test_raft_operator -*-
"""The ``Operator.Raft*`` RPC endpoints: the raft configuration as Consul's operator API shows it,
and removing a server from it.

* ``Operator.RaftGetConfiguration``: ``{"Servers": [{"ID", "Node", "Address", "Leader",
  "ProtocolVersion", "Voter"}], "Index"}``. Raft names servers by their RPC address; ``Node``
  and ``ProtocolVersion`` come from the server's LAN gossip member (``(unknown)`` and
  ``unknown`` when it is not one), ``ID`` is that member's node ID (the address when it is not a
  member). Served by the leader, or by any server with ``AllowStale``.
* ``Operator.RaftRemovePeerByAddress`` / ``Operator.RaftRemovePeerByID``: a raft membership
  change on the leader removing that voter (``ID`` may be the node ID or the raft address).
  A peer not in the configuration is refused with Consul's ``address "<a>" was not found in the
  Raft configuration`` / ``id "<id>" was not found in the Raft configuration``.

Forwarding (to the leader, or to another datacenter by ``Datacenter``) is the ``forward``
function given: the catalog endpoints' one, so the hold-timeout rules are the same as theirs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wanfedtx.hostport import normalize_host_port
from wanfedtx.raft.errors import ConfigChangeError, RaftError

log = Logger(namespace="agent.server.raft")

Args = dict[str, Any]
Forward = Callable[[str, Args, bool], Awaitable[tuple[bool, Any]]]
"""``forward(method, args, write)``: (True, reply) if another server served it, else (False,
None) to serve it here."""


@attrs.frozen
class ServerIdentity:
    """What LAN gossip says about the server at a raft address."""

    node: str
    node_id: str
    raft_vsn: str


ServerLookup = Callable[[], Mapping[str, ServerIdentity]]
"""The LAN pool's servers by raft (RPC) address."""


class IRaftMembership(Protocol):
    """What the operator endpoints need from raft (``RaftService``)."""

    def configuration(self) -> tuple[int, list[str]]: ...

    def leader_address(self) -> str: ...

    def remove_server(self, addr: str) -> Deferred[tuple[int, Any]]: ...


def server_entries(
    voters: list[str], leader: str, known: Mapping[str, ServerIdentity]
) -> list[Args]:
    """The ``Servers`` of a configuration reply (every member of the configuration votes)."""
    by_addr = {normalize_host_port(a): ident for a, ident in known.items()}
    out = []
    for addr in voters:
        ident = by_addr.get(normalize_host_port(addr))
        out.append({
            "ID": (ident.node_id if ident is not None and ident.node_id else addr),
            "Node": ident.node if ident is not None else "(unknown)",
            "Address": addr,
            "Leader": addr == leader,
            "ProtocolVersion": ident.raft_vsn if ident is not None else "unknown",
            "Voter": True,
        })
    return out


@attrs.define
class OperatorEndpoints:
    """``Operator.Raft*`` over ``raft`` (None: this server runs no raft; it is its only peer)."""

    raft: IRaftMembership | None
    servers: ServerLookup
    forward: Forward
    self_address: str

    def handlers(self) -> dict[str, Callable[[Args], Deferred[Any]]]:
        table: dict[str, Callable[[Args], Awaitable[Any]]] = {
            "Operator.RaftGetConfiguration": self.raft_get_configuration,
            "Operator.RaftRemovePeerByAddress": self.raft_remove_peer_by_address,
            "Operator.RaftRemovePeerByID": self.raft_remove_peer_by_id,
        }
        return {name: _deferred(fn) for name, fn in table.items()}

    def register_into(self, registry: Any) -> None:
        """Add the handlers to an RPC endpoint table (``wanfedtx.rpc.endpoints.Endpoints``)."""
        for name, handler in self.handlers().items():
            registry.register(name, handler)

    def _configuration(self) -> tuple[int, list[str], str]:
        if self.raft is None:
            return 0, [self.self_address], self.self_address
        index, voters = self.raft.configuration()
        return index, voters, self.raft.leader_address()

    async def raft_get_configuration(self, args: Args) -> Any:
        forwarded, reply = await self.forward("Operator.RaftGetConfiguration", args, False)
        if forwarded:
            return reply
        index, voters, leader = self._configuration()
        return {"Servers": server_entries(voters, leader, self.servers()), "Index": index}

    async def raft_remove_peer_by_address(self, args: Args) -> Any:
        forwarded, reply = await self.forward("Operator.RaftRemovePeerByAddress", args, True)
        if forwarded:
            return reply
        wanted = str(args.get("Address") or "")
        _, voters, _ = self._configuration()
        for addr in voters:
            if normalize_host_port(addr) == normalize_host_port(wanted):
                return await self._remove(addr)
        raise ConfigChangeError(f'address "{wanted}" was not found in the Raft configuration')

    async def raft_remove_peer_by_id(self, args: Args) -> Any:
        forwarded, reply = await self.forward("Operator.RaftRemovePeerByID", args, True)
        if forwarded:
            return reply
        wanted = str(args.get("ID") or "")
        _, voters, leader = self._configuration()
        for entry in server_entries(voters, leader, self.servers()):
            if wanted in (entry["ID"], entry["Address"]):
                return await self._remove(entry["Address"])
        raise ConfigChangeError(f'id "{wanted}" was not found in the Raft configuration')

    async def _remove(self, addr: str) -> None:
        if self.raft is None:
            raise RaftError("this server runs without raft (no data_dir): it is its only peer")
        try:
            await self.raft.remove_server(addr)
        except RaftError as exc:
            log.warn("Failed to remove Raft peer: peer={peer} error={error}", peer=addr,
                     error=str(exc))
            raise
        log.warn("Removed Raft peer: peer={peer}", peer=addr)
        return None


def _deferred(fn: Callable[[Args], Awaitable[Any]]) -> Callable[[Args], Deferred[Any]]:
    async def call(args: Args) -> Any:
        return await fn(args)

    def handler(args: Args) -> Deferred[Any]:
        return Deferred.fromCoroutine(call(args))

    return handler
