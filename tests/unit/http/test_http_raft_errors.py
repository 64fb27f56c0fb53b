"""A write whose leader lost its leadership before the entry committed (or a server that is no
longer the leader) answers a one-line 500 with raft's text, as the reference does, and logs no
traceback: the fault suite saw ``internal error: LeadershipLostError`` and a traceback when a
SIGSTOPped leader came back."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.web.test.requesthelper import DummyRequest

from wanfedtx.http.common import error_reply
from wanfedtx.raft.errors import LeadershipLostError, NotLeaderError


@pytest.mark.parametrize(
    "exc",
    [
        LeadershipLostError("leadership lost while committing log"),
        NotLeaderError("node is not the leader"),
    ],
)
def test_raft_errors_are_plain_500s(exc: Exception, logged: list[dict[str, Any]]) -> None:
    request = DummyRequest([b"v1", b"kv", b"x"])
    request.method = b"PUT"
    body = error_reply(request, exc)
    assert request.responseCode == 500
    assert body == str(exc).encode()
    assert not [e for e in logged if "log_failure" in e]
