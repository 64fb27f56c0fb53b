"""Errors of a client agent's RPC path, with Consul's exact texts."""

from __future__ import annotations

from wanfedtx.rpc.errors import RPCLayerError

NO_SERVERS = "No known Consul servers"
RATE_EXCEEDED = "RPC rate limit exceeded"


class ClientRPCError(RPCLayerError):
    """An RPC from a client agent failed; ``str(e)`` is what the HTTP API answers (500)."""


class NoServers(ClientRPCError):
    """The client knows no server of its datacenter (``structs.ErrNoServers``)."""

    def __init__(self) -> None:
        super().__init__(NO_SERVERS)


class RateExceeded(ClientRPCError):
    """``limits.rpc_rate`` refused the call (``structs.ErrRPCRateExceeded``)."""

    def __init__(self) -> None:
        super().__init__(RATE_EXCEEDED)
