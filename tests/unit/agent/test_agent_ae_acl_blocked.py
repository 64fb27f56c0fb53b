"""Anti-entropy when the agent's token may not write: Consul's ``... blocked by ACLs`` warnings,
the entry counted as synced (no 15 s retry loop), and a normal sync once the token allows it."""

from __future__ import annotations

from typing import Any

from test_agent_local_ae import World
from twisted.internet.defer import Deferred, fail
from twisted.logger import formatEvent

from wanfedtx.acl.model import PermissionDeniedError
from wanfedtx.local.definitions import decode_service


class DenyingWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.deny = True

    def rpc(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        if self.deny and method in ("Catalog.Register", "Catalog.Deregister"):
            self.calls.append(method)
            return fail(PermissionDeniedError())
        return super().rpc(method, args)


def _warnings(logged: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in logged if "blocked by ACLs" in str(e.get("log_format"))]


def test_denied_registration_is_logged_once_and_not_retried(
    logged: list[dict[str, Any]],
) -> None:
    w = DenyingWorld()
    w.local.add_service(decode_service({"Name": "web", "Port": 80}))
    w.start()
    assert "Service registration blocked by ACLs: service=web" in _warnings(logged)
    assert any(line.startswith("Node info update blocked by ACLs: node=") for line in
               _warnings(logged))
    assert not any("failed to sync remote state" in formatEvent(e) for e in logged)
    assert w.local.services["web"].in_sync
    registers = w.calls.count("Catalog.Register")
    w.clock.advance(30)  # past the 15 s retry of a failed sync: nothing is retried
    assert w.calls.count("Catalog.Register") == registers
    assert w.catalog_services() == {}

    # The token now allows it (say, an agent token was set): a change syncs normally.
    w.deny = False
    w.local.add_service(decode_service({"Name": "web", "Port": 81}))
    w.clock.advance(1)
    assert w.catalog_services()["web"]["Port"] == 81
