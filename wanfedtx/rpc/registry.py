# -*- test-case-name: tests.unit.rpc.test_rpc_fuzz,tests.unit.rpc.test_rpc_port -*-
"""Handlers of the RPC port by legacy type byte and by negotiated ALPN name.

See ``wanfedtx.rpc.interfaces`` for how a handler is written. ``consul/rpc-gossip`` is never
dispatched (the reference's OSS build discards it), and types 3 (RPCTLS) and above 7 are not
handlers but framing, so they cannot be registered.
"""

from __future__ import annotations

from twisted.internet.interfaces import IProtocol, IProtocolFactory

from wanfedtx.rpc.constants import ALPN_RPC_GOSSIP, RPC_MAX_TYPE_VALUE, RPC_NEXT_PROTOS, RPCType
from wanfedtx.rpc.errors import DuplicateRegistration
from wanfedtx.rpc.interfaces import ConnectionInfo, IRPCHandler


class HandlerRegistry:
    """Maps type bytes (legacy path) and ALPN names (native TLS) to ``IRPCHandler``s."""

    def __init__(self) -> None:
        self._by_type: dict[int, IRPCHandler] = {}
        self._by_alpn: dict[str, IRPCHandler] = {}

    def register_type(self, rpc_type: int, handler: IRPCHandler) -> None:
        """Serve connections whose (inner) first byte is ``rpc_type``.

        Type 7 (RPCTLSInsecure) is the handler run after that connection's TLS handshake."""
        if not 0 <= rpc_type <= RPC_MAX_TYPE_VALUE or rpc_type == RPCType.TLS:
            raise ValueError(f"RPC type {rpc_type} cannot have a handler; use 0-2 or 4-7")
        if rpc_type in self._by_type:
            raise DuplicateRegistration(f"a handler for RPC type {rpc_type} is registered")
        self._by_type[rpc_type] = handler

    def register_alpn(self, name: str, handler: IRPCHandler) -> None:
        """Serve native-TLS connections that negotiated ``name``."""
        if name not in RPC_NEXT_PROTOS or name == ALPN_RPC_GOSSIP:
            offered = ", ".join(p for p in RPC_NEXT_PROTOS if p != ALPN_RPC_GOSSIP)
            raise ValueError(f"ALPN {name!r} is not served by the RPC port; use one of {offered}")
        if name in self._by_alpn:
            raise DuplicateRegistration(f"a handler for ALPN {name} is registered")
        self._by_alpn[name] = handler

    def register(self, rpc_type: RPCType, handler: IRPCHandler) -> None:
        """Register ``handler`` for a type byte and for that type's ALPN name, if it has one."""
        self.register_type(rpc_type, handler)
        alpn = rpc_type.alpn_string()
        if alpn and alpn != ALPN_RPC_GOSSIP:
            self.register_alpn(alpn, handler)

    def for_type(self, rpc_type: int) -> IRPCHandler | None:
        return self._by_type.get(rpc_type)

    def for_alpn(self, name: str) -> IRPCHandler | None:
        return self._by_alpn.get(name)


class FactoryHandler:
    """``IRPCHandler`` that builds protocols from a Twisted ``IProtocolFactory``."""

    def __init__(self, factory: IProtocolFactory) -> None:
        self._factory = factory

    def build_protocol(self, conn: ConnectionInfo) -> IProtocol:
        proto = self._factory.buildProtocol(conn.transport.getPeer())
        if proto is None:
            raise ValueError("the protocol factory refused the connection")
        return proto


def handler_from_factory(factory: IProtocolFactory) -> IRPCHandler:
    return FactoryHandler(factory)
