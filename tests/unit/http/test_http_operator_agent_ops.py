"""``/v1/operator/raft/*``, ``/v1/agent/reload`` and ``/v1/agent/monitor`` alone, with fakes,
through ``treq.testing.StubTreq``."""

from __future__ import annotations

import json
from typing import Any

import attrs
import treq
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.web.resource import IResource

from wanfedtx.http.agent_ops import MONITOR_BUFFER_LINES, AgentOpsRoutes, MonitorObserver
from wanfedtx.http.common import APIContext
from wanfedtx.http.operator import OperatorRoutes
from wanfedtx.logs import format_text
from wanfedtx.raft.errors import ConfigChangeError

BASE = "http://127.0.0.1:8500"


def call(resource: IResource, method: str, path: str) -> tuple[int, bytes, Any]:
    stub = StubTreq(resource)
    got: list[Any] = []
    stub.request(method, BASE + path).addBoth(got.append)
    stub.flush()
    response = got[0]
    body: list[bytes] = []
    stub.content(response).addCallback(body.append)
    stub.flush()
    return response.code, body[0], response.headers


@attrs.define
class RPC:
    replies: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    def __call__(self, method: str, args: dict[str, Any]) -> Deferred[Any]:
        self.calls.append((method, args))
        reply = self.replies[method]
        return fail(reply) if isinstance(reply, Exception) else succeed(reply)


def operator(replies: dict[str, Any]) -> tuple[IResource, RPC]:
    rpc = RPC(replies)
    return OperatorRoutes(APIContext("dc1", rpc)).app.resource(), rpc


def test_raft_configuration_shape_and_stale() -> None:
    servers = [{"ID": "a", "Node": "s1", "Address": "a:8300", "Leader": True,
                "ProtocolVersion": "3", "Voter": True}]
    resource, rpc = operator({"Operator.RaftGetConfiguration": {
        "Servers": servers, "Index": 9, "KnownLeader": True}})
    code, body, _ = call(resource, "GET", "/v1/operator/raft/configuration?stale&dc=dc2")
    assert code == 200
    assert json.loads(body) == {"Servers": servers, "Index": 9}
    method, args = rpc.calls[0]
    assert method == "Operator.RaftGetConfiguration"
    assert (args["AllowStale"], args["Datacenter"]) == (True, "dc2")


def test_raft_peer_delete_validation_and_errors() -> None:
    resource, rpc = operator({
        "Operator.RaftRemovePeerByAddress": None,
        "Operator.RaftRemovePeerByID": ConfigChangeError('id "x" was not found in the Raft '
                                                         "configuration"),
    })
    assert call(resource, "DELETE", "/v1/operator/raft/peer")[:2] == (
        400, b"Must specify either ?id with the server's ID or ?address with IP:port of peer "
        b"to remove")
    assert call(resource, "DELETE", "/v1/operator/raft/peer?id=a&address=b")[:2] == (
        400, b"Must specify only one of ?id or ?address")
    assert call(resource, "DELETE", "/v1/operator/raft/peer?address=10.0.0.1:8300")[:2] == (
        200, b"")
    assert rpc.calls[-1] == ("Operator.RaftRemovePeerByAddress",
                             {"Datacenter": "dc1", "Token": "", "Address": "10.0.0.1:8300"})
    assert call(resource, "DELETE", "/v1/operator/raft/peer?id=x")[:2] == (
        500, b'id "x" was not found in the Raft configuration')
    assert call(resource, "GET", "/v1/operator/raft/peer")[0] == 405
    assert call(resource, "GET", "/v1/operator/raft/nope")[:2] == (404, b"404 page not found")


@attrs.define
class Ops:
    error: str = ""
    calls: int = 0

    def reload(self) -> Any:
        self.calls += 1
        if self.error:
            raise RuntimeError(self.error)

        async def done() -> None:
            return None

        return done()


def test_reload_answers_200_or_the_error_text() -> None:
    ops = Ops()
    resource = AgentOpsRoutes(ops).app.resource()
    assert call(resource, "PUT", "/v1/agent/reload")[:2] == (200, b"")
    ops.error = "Failed to reload configs: bad"
    assert call(resource, "PUT", "/v1/agent/reload")[:2] == (500, b"Failed to reload configs: bad")
    assert ops.calls == 2
    assert call(resource, "GET", "/v1/agent/reload")[0] == 405


def test_monitor_rejects_an_unknown_level() -> None:
    resource = AgentOpsRoutes(Ops(), LogPublisher()).app.resource()
    assert call(resource, "GET", "/v1/agent/monitor?loglevel=bogus")[:2] == (
        400, b"Unknown log level: bogus")


def test_monitor_streams_lines_at_the_level_until_the_client_goes() -> None:
    publisher = LogPublisher()
    resource = AgentOpsRoutes(Ops(), publisher).app.resource()
    stub = StubTreq(resource)
    got: list[Any] = []
    request = stub.get(BASE + "/v1/agent/monitor?loglevel=warn")
    request.addBoth(got.append)
    stub.flush()
    response = got[0]
    assert response.code == 200  # the status is sent before any line
    chunks: list[bytes] = []
    collected = treq.collect(response, chunks.append)
    log = Logger(namespace="agent.test", observer=publisher)
    log.info("not shown")
    log.warn("shown {n}", n=1)
    log.error("also shown")
    stub.flush()
    text = b"".join(chunks).decode()
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert lines[0].endswith("[WARN]  agent.test: shown 1")
    assert lines[1].endswith("[ERROR] agent.test: also shown")
    assert not collected.called
    assert len(publisher._observers) == 1


class _Transport:
    def __init__(self) -> None:
        self.dataBuffer = b""


class _Channel:
    def __init__(self) -> None:
        self.transport = _Transport()


class _Request:
    def __init__(self) -> None:
        self.channel = _Channel()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_monitor_drops_lines_while_the_client_is_backed_up(logged: list[dict[str, Any]]) -> None:
    request: Any = _Request()
    observer = MonitorObserver(request, LogLevel.info, format_text)
    request.channel.transport.dataBuffer = b"x"  # the client reads nothing
    event = {"log_level": LogLevel.info, "log_format": "line", "log_namespace": "t"}
    for _ in range(MONITOR_BUFFER_LINES + 10):
        observer(dict(event))
    assert len(request.written) == MONITOR_BUFFER_LINES and observer.dropped == 10
    request.channel.transport.dataBuffer = b""
    observer(dict(event))
    assert observer.dropped == 0 and len(request.written) == MONITOR_BUFFER_LINES + 1
    warned = [e for e in logged if e.get("log_format", "").startswith("Dropped logs")]
    assert warned and warned[0]["dropped_count"] == 10
