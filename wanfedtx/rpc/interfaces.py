# -*- test-case-name: tests.unit.rpc.test_rpc_dial,tests.unit.rpc.test_rpc_frame_budget -*-
"""Seams of the RPC layer: what it needs from TLS, routing and consensus, and what handlers provide.

Handlers (``IRPCHandler``)
--------------------------
The :8300 port hands every accepted connection to the handler registered for its first type byte
(legacy path) or for its negotiated ALPN name (native TLS). To add a protocol (raft, gossip
tunnels, snapshots), write a handler and register it; the sniffer never changes::

    from wanfedtx.rpc.constants import ALPN_RPC_RAFT, RPCType

    class RaftHandler:
        def build_protocol(self, conn: ConnectionInfo) -> IProtocol:
            return MyRaftProtocol(...)

    registry.register_alpn(ALPN_RPC_RAFT, RaftHandler())
    registry.register_type(RPCType.RAFT, RaftHandler())

The port then calls ``protocol.makeConnection(transport)`` (for native TLS the transport is the TLS
layer, with ``negotiatedProtocol`` and ``getPeerCertificate()``), delivers the bytes already read
past the type byte with ``dataReceived``, and forwards every later ``dataReceived`` and
``connectionLost``. ``handler_from_factory`` adapts any ``IProtocolFactory``.

Collaborators are plain ``typing.Protocol`` types so tests can pass real objects or small fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    ITransport,
)


@attrs.frozen
class ConnectionInfo:
    """What the port knows about an accepted connection when it hands it to a handler.

    ``rpc_type`` is the legacy type byte (None for native TLS); ``alpn`` the negotiated protocol
    (None on the legacy path); ``tls`` whether the bytes travel inside TLS; ``sni`` the server
    name the client sent, if any. ``peer_node`` is set on raft connections when the port enforces
    server identity (``verify_incoming`` and ``verify_server_hostname``): the node name from the
    peer's verified ``<node>.server.<dc>.<domain>`` certificate SAN (``*`` for a wildcard node
    certificate); None when identity is not enforced.
    """

    transport: ITransport
    rpc_type: int | None
    alpn: str | None
    tls: bool
    sni: str | None = None
    peer_node: str | None = None


SourceCheck = Callable[[str | None, str], str | None]
"""Raft's per-message source check: ``(peer_node, message_src) -> None`` when the message may be
read, or the reason to refuse it (the connection is then closed). ``peer_node`` is
``ConnectionInfo.peer_node``; ``message_src`` the raft address the message claims to come from."""


@runtime_checkable
class IRPCHandler(Protocol):
    """Builds the protocol that serves one accepted connection."""

    def build_protocol(self, conn: ConnectionInfo) -> IProtocol: ...


class IServerTLS(Protocol):
    """What the RPC port needs from the TLS configurator (``wanfedtx.tls``)."""

    def mutual_tls_capable(self) -> bool:
        """A CA pool and a certificate are loaded (native TLS is accepted only then)."""

    def verify_incoming_rpc(self) -> bool:
        """Plaintext RPC (types other than 3 and 7) must be refused."""

    def incoming_alpn_creator(self, protocols: Sequence[str]) -> IOpenSSLServerConnectionCreator:
        """Native TLS: client certs required and verified, ``protocols`` offered by ALPN.

        Called for every connection so reloaded certificates are used."""

    def incoming_rpc_creator(self) -> IOpenSSLServerConnectionCreator:
        """Legacy RPCTLS (type 3): verify client certs as ``verify_incoming`` says.

    A provider may also have ``incoming_insecure_rpc_creator()`` (RPCTLSInsecure, type 7: TLS
    without client certificates, for AutoEncrypt.Sign); without it type 7 is refused."""


class IClientTLS(Protocol):
    """What outgoing dials need from the TLS configurator (``wanfedtx.tls``)."""

    def mutual_tls_capable(self) -> bool:
        """A CA pool and a certificate are loaded (ALPN dials are possible only then)."""

    def outgoing_tls_enabled(self) -> bool:
        """Outgoing RPC uses TLS (``verify_outgoing``)."""

    def server_sni(self, dc: str, node: str) -> str:
        """``<node>.server.<dc>.<domain>``, or ``server.<dc>.<domain>`` for "" or "*"."""

    def outgoing_alpn_creator(
        self, dc: str, node: str, alpn: str
    ) -> IOpenSSLClientConnectionCreator | None:
        """Client cert, SNI ``server_sni(dc, node)`` with hostname verification, ALPN [alpn];
        None when not mutual-TLS capable."""

    def outgoing_rpc_creator(self, dc: str) -> IOpenSSLClientConnectionCreator | None:
        """Legacy RPCTLS client side (after the outer byte 3); None without outgoing TLS."""


class IGatewayResolver(Protocol):
    """Picks a mesh gateway for a datacenter (implemented by the gateway locator)."""

    def pick_gateway(self, dc: str) -> str | None:
        """``"host:port"`` of a gateway that reaches ``dc``, or None/"" when there is none."""


@attrs.frozen
class ServerAddress:
    """A server to dial: its short node name (as in the cert SAN) and ``host:port``."""

    name: str
    addr: str


class ILeaderProvider(Protocol):
    """Who leads this datacenter (implemented by consensus; ``StaticLeader`` stands in)."""

    def is_leader(self) -> bool: ...

    def leader(self) -> ServerAddress | None:
        """The current leader, or None while there is none."""


class IRouter(Protocol):
    """Servers known in other datacenters (implemented by the WAN server router)."""

    def servers_for_dc(self, dc: str) -> Sequence[ServerAddress]:
        """Servers of ``dc``, best first; empty when the DC is unknown or unreachable."""

    def datacenters(self) -> Sequence[str]:
        """Every datacenter the router knows (with at least one server)."""
