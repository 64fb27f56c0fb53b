# -*- test-case-name: tests.unit.federation,tests.unit.acl,tests.unit.connect -*-
"""What the server-side subsystems (federation states, ACLs, the Connect CA) need from a
server's catalog: the agent's ``CatalogAgent`` provides it."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

from wanfedtx.catalog.endpoints import Endpoints
from wanfedtx.fsm.consensus import Consensus
from wanfedtx.fsm.machine import FSM


class ICatalogServer(Protocol):
    """A server's catalog: its datacenter, FSM, consensus, RPC endpoints and handler table."""

    @property
    def datacenter(self) -> str: ...

    @property
    def fsm(self) -> FSM: ...

    @property
    def consensus(self) -> Consensus: ...

    @property
    def endpoints(self) -> Endpoints: ...

    @property
    def handlers(self) -> MutableMapping[str, Any]: ...
