# -*- test-case-name: tests.unit.rpc.test_rpc_codec,tests.unit.rpc.test_rpc_dial -*-
"""Exceptions of the RPC layer; messages are the reference's exact strings where it has them."""

from __future__ import annotations


class RPCLayerError(Exception):
    """Base class of every error raised by ``wanfedtx.rpc``."""


class NodeNameRequired(RPCLayerError):
    """A pool operation was called without the destination node name."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"pool: ConnPool.{operation} requires a node name")


class DialError(RPCLayerError):
    """An outgoing connection could not be made (guards, TCP, TLS or ALPN)."""


class ALPNNotNegotiated(DialError):
    """The server did not select the ALPN protocol we asked for."""

    def __init__(self, wanted: str, got: str) -> None:
        super().__init__(f'could not negotiate ALPN protocol "{wanted}" with "{got}"')


class DCNotAvailable(DialError):
    """The gateway resolver has no gateway for that datacenter (``ErrDCNotAvailable``)."""

    def __init__(self) -> None:
        super().__init__("Remote DC has no server currently reachable")


class NoDCPath(RPCLayerError):
    """No known server in the target datacenter (``ErrNoDCPath``)."""

    def __init__(self) -> None:
        super().__init__("No path to datacenter")


class NoLeader(RPCLayerError):
    """This datacenter has no known leader (``ErrNoLeader``)."""

    def __init__(self) -> None:
        super().__init__("No cluster leader")


class RemoteError(RPCLayerError):
    """The remote endpoint returned an error string; ``str(e)`` is that string verbatim."""


class ConnectionClosed(RPCLayerError):
    """The RPC connection closed before the call's response arrived."""


class FrameError(RPCLayerError):
    """A malformed or oversized RPC frame; the connection carrying it is closed (the decoder
    reports it as a value, ``FrameDecoder.failed``, after the frames before it)."""


class DuplicateRegistration(RPCLayerError):
    """A handler or endpoint was registered twice under the same key."""


class RPCTimeout(RPCLayerError):
    """A forwarded call had no reply within its deadline (the blocking wait plus a bound)."""

    def __init__(self, method: str, server: str, dc: str, seconds: float) -> None:
        super().__init__(
            f"rpc error: timeout waiting for {method} from {server} in datacenter {dc!r} "
            f"after {seconds:g}s")
