"""The leader's ACL initialization is retried until it succeeds: an attempt whose raft apply
fails (a new term not ready yet, a timeout under load) must not leave the datacenter without its
anonymous token (every request without a token would be ``ACL not found`` for the whole term)."""

from __future__ import annotations

from typing import Any

from acl_support import Net
from twisted.internet.defer import Deferred, fail

from wanfedtx.acl.model import ANONYMOUS_ACCESSOR
from wanfedtx.catalog.errors import NotReadyError
from wanfedtx.fsm.commands import MessageType


def test_a_failed_initialization_is_retried(net: Net, logged: list[dict[str, Any]]) -> None:
    net.add("dc1", "dc1")
    cat = net.servers["dc1"]
    real_apply = cat.endpoints._apply
    failures = {"left": 2}

    def flaky_apply(kind: MessageType, body: dict[str, Any]) -> Deferred[Any]:
        if kind == MessageType.ACL_TOKEN_SET and failures["left"]:
            failures["left"] -= 1
            return fail(NotReadyError())
        return real_apply(kind, body)

    cat.endpoints._apply = flaky_apply  # type: ignore[method-assign]
    cat.startService()
    state = cat.fsm.state
    assert state.acl_token_get(None, ANONYMOUS_ACCESSOR)[1] is None
    assert any("failed to initialize ACLs, retrying" in str(e.get("log_format")) for e in logged)
    net.clock.advance(0.5)  # second attempt fails too
    assert state.acl_token_get(None, ANONYMOUS_ACCESSOR)[1] is None
    net.clock.advance(1.0)  # the third succeeds
    assert state.acl_token_get(None, ANONYMOUS_ACCESSOR)[1] is not None
