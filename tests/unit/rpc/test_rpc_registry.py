"""Handler registry rules and the RPC type constants."""

from __future__ import annotations

import pytest
from rpc_support import RecordingHandler
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from wanfedtx.rpc.constants import RPC_NEXT_PROTOS, RPCType
from wanfedtx.rpc.errors import DuplicateRegistration
from wanfedtx.rpc.interfaces import ConnectionInfo, IRPCHandler
from wanfedtx.rpc.registry import HandlerRegistry, handler_from_factory


def test_alpn_strings_and_offer_order() -> None:
    assert [t.alpn_string() for t in RPCType] == [
        "consul/rpc-single", "consul/raft", "", "", "consul/rpc-multi", "consul/rpc-snapshot",
        "consul/rpc-gossip", ""]
    assert RPC_NEXT_PROTOS == (
        "consul/rpc-single", "consul/raft", "consul/rpc-multi", "consul/rpc-snapshot",
        "consul/rpc-gossip", "consul/wan-gossip/packet", "consul/wan-gossip/stream")


def test_register_rules() -> None:
    reg = HandlerRegistry()
    h = RecordingHandler()
    assert isinstance(h, IRPCHandler)
    reg.register(RPCType.RAFT, h)
    assert reg.for_type(1) is h and reg.for_alpn("consul/raft") is h
    reg.register(RPCType.GOSSIP, h)  # type byte only: rpc-gossip is never dispatched by ALPN
    assert reg.for_alpn("consul/rpc-gossip") is None
    reg.register_alpn("consul/wan-gossip/packet", h)
    for bad in (3, 8, -1, 255):
        with pytest.raises(ValueError):
            reg.register_type(bad, h)
    for name in ("consul/rpc-gossip", "foo/bar", ""):
        with pytest.raises(ValueError):
            reg.register_alpn(name, h)
    with pytest.raises(DuplicateRegistration):
        reg.register_type(1, h)
    with pytest.raises(DuplicateRegistration):
        reg.register_alpn("consul/raft", h)


def test_handler_from_factory() -> None:
    handler = handler_from_factory(Factory.forProtocol(Protocol))
    proto = handler.build_protocol(ConnectionInfo(StringTransport(), 5, None, tls=False))
    assert isinstance(proto, Protocol)
