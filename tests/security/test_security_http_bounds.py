"""The HTTP API's bounds against a real ``wanfed agent -dev`` process over real sockets.

* 10 MB bodies (``Content-Length`` and chunked) to every write route of the agent's route table
  get 413 with one line, and the agent's RSS stays flat (nothing is buffered);
* 300 connections from 127.0.0.1 are cut at ``limits.http_max_conns_per_client`` (50 here) while
  127.0.0.2 is still served; 20,500 idle connections from one address (the reported attack, held
  by two child processes) leave the agent with the default limit of 200 and a bounded number of
  file descriptors, and another address is served meanwhile;
* a slowloris connection (a header byte every 0.2 s) is closed at the 1 s header deadline, while
  a blocking query parked for longer is answered;
* a non-UTF-8 URL and 10,000-deep JSON get 400, with no traceback in the agent's log;
* an unexpected exception in a handler (in-process agent) is a plain 500 and logged with the
  request.
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from agent_support import http_on_port_zero
from netutil import free_port
from twisted.logger import globalLogPublisher

from wanfedtx.agent.agent import Agent
from wanfedtx.cli.demo import poll_until
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
TEN_MB = 10 * 1024 * 1024
LIMITS_HCL = """
limits {
  http_max_conns_per_client = 50
  http_read_header_timeout = "1s"
}
"""


class AgentProcess:
    def __init__(self, tmp: Path, limits_hcl: str = LIMITS_HCL) -> None:
        cfg = tmp / "limits.hcl"
        cfg.write_text(limits_hcl)
        self.port = free_port()
        self.log = tmp / "agent.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                str(BIN / "wanfed"), "agent", "-dev", "-node", "sec", "-http-port", str(self.port),
                "-serf-lan-port", str(free_port()), "-serf-wan-port", str(free_port()),
                "-server-port", str(free_port()), "-config-file", str(cfg),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        if not poll_until(self._serving, 30, interval=0.1):
            raise AssertionError("agent did not serve in time")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.log.read_text()}")
        try:
            reply = self.request(b"GET /v1/catalog/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.1 200")

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", self.port))
        return s

    def request(self, raw: bytes) -> bytes:
        with self.connect() as s:
            s.sendall(raw)
            return read_response(s)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            self._out.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path)
    try:
        yield a
    finally:
        a.stop()


def read_response(s: socket.socket) -> bytes:
    """Everything until the server closes (or answers a complete, sized response)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    if len(body) >= int(line.split(b":")[1]):
                        return data


def send_big(a: AgentProcess, method: str, path: str, chunked: bool) -> bytes:
    """Send a 10 MB body, stopping as soon as the server answers; return the response."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % TEN_MB
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + framing + b"\r\n\r\n"
    piece = b"x" * 65536
    if chunked:
        piece = b"10000\r\n" + piece + b"\r\n"
    with a.connect() as s:
        s.sendall(head)
        for _ in range(TEN_MB // 65536):
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(piece)
            except OSError:
                break
        return read_response(s)


def write_routes() -> list[tuple[str, str]]:
    """Every PUT/POST route of a dev agent's route families, with placeholders filled in."""
    flags = {"node_name": "enum"}  # the agent is built, never started: nothing listens
    rt = load(LoadOptions(dev=True, flags=flags)).runtime
    from twisted.internet import reactor

    api = Agent(rt, reactor).app
    out = set()
    for rule in api.rules():
        for method in sorted((rule.methods or set()) & {"PUT", "POST"}):
            out.add((method, re.sub(r"<[^>]+>", "x", rule.rule)))
    # A body that passed the cap could stop the agent: the leave goes last.
    return sorted(out, key=lambda mp: (mp[1] == "/v1/agent/leave", mp))


def test_big_bodies_to_every_write_route_are_413_and_rss_stays_flat(
    agent: AgentProcess,
) -> None:
    routes = write_routes()
    paths = {p for _, p in routes}
    assert {"/v1/kv/x", "/v1/catalog/register", "/v1/catalog/deregister",
            "/v1/agent/service/register", "/v1/agent/check/register",
            "/v1/agent/check/update/x"} <= paths, paths
    # Warm up every route's refusal path, then measure.
    for method, path in routes:
        assert send_big(agent, method, path, chunked=False).startswith(b"HTTP/1.1 413")
    before = agent.rss()
    for method, path in routes:
        for chunked in (False, True):
            resp = send_big(agent, method, path, chunked)
            status, _, rest = resp.partition(b"\r\n")
            assert status == b"HTTP/1.1 413 Request Entity Too Large", (method, path, resp[:200])
            body = rest.partition(b"\r\n\r\n")[2]
            assert b"too large, max size: " in body and b"\n" not in body, body
            if path == "/v1/kv/x" and not chunked:
                assert body == (
                    b"Request body(10485760 bytes) too large, max size: 524288 bytes. "
                    b"See limits.kv_max_value_size."
                )
    after = agent.rss()
    # 2 x 10 MB per route would be hundreds of MB if buffered; allow a few MB of noise.
    assert after - before < 16 * 1024 * 1024, (before, after, len(routes))
    assert agent.proc.poll() is None


def test_connections_per_client_cut_while_another_address_is_served(
    agent: AgentProcess,
) -> None:
    socks = [agent.connect() for _ in range(300)]
    try:
        for s in socks:
            try:
                s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
        served = sum(read_response(s).startswith(b"HTTP/1.1 200") for s in socks)
        assert served == 50
        with agent.connect("127.0.0.2") as other:
            other.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other).startswith(b"HTTP/1.1 200")
    finally:
        for s in socks:
            s.close()
    assert "client connection limit reached" in agent.log.read_text()


def test_slowloris_closed_at_header_deadline_parked_query_is_not(agent: AgentProcess) -> None:
    header = b"GET /v1/status/leader HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with agent.connect() as s:
        sent = 0
        closed = False
        while sent < len(header):
            try:
                s.sendall(header[sent : sent + 1])
            except OSError:
                closed = True
                break
            sent += 1
            readable, _, _ = select.select([s], [], [], 0.2)
            if readable and read_response(s) == b"":
                closed = True
                break
        # A byte every 0.2 s would take 20 s for this header: the deadline (1 s) came first.
        assert closed and sent < len(header)
    # A blocking query parked past the header deadline is answered on its connection.
    first = agent.request(b"GET /v1/kv/?recurse HTTP/1.1\r\nHost: x\r\n\r\n")
    idx = next(ln for ln in first.split(b"\r\n") if ln.lower().startswith(b"x-consul-index"))
    n = int(idx.split(b":")[1])
    started = time.monotonic()
    resp = agent.request(
        b"GET /v1/kv/?recurse&index=%d&wait=2s HTTP/1.1\r\nHost: x\r\n\r\n" % n
    )
    assert time.monotonic() - started > 1.0, "the query was not parked past the deadline"
    assert resp.startswith(b"HTTP/1.1 404") and b"X-Consul-Index" in resp
    assert "header read deadline" in agent.log.read_text()


def test_bad_utf8_and_deep_json_are_400_without_traceback(agent: AgentProcess) -> None:
    resp = agent.request(b"GET /v1/kv/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400") and resp.endswith(b"\r\n\r\nNon-UTF-8 encoding in URL.")
    body = b"[" * 10_000 + b"]" * 10_000
    resp = agent.request(
        b"PUT /v1/catalog/register HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    assert resp.startswith(b"HTTP/1.1 400")
    assert resp.endswith(b"Request decode failed: JSON nested deeper than 64 levels")
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.log.read_text()


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        # NaN as a check TTL reached the check timer (an AssertionError, then on every run)
        ("/v1/agent/check/register", b'{"Name":"c","TTL":NaN}', b"invalid JSON value NaN"),
        ("/v1/agent/service/register", b'{"Name":"w","Check":{"TTL":NaN}}',
         b"invalid JSON value NaN"),
        # Infinity, or a float that overflows, as a CA duration: int(inf)
        ("/v1/connect/ca/configuration",
         b'{"Provider":"consul","Config":{"LeafCertTTL":Infinity}}',
         b"invalid JSON value Infinity"),
        ("/v1/connect/ca/configuration", b'{"Provider":"consul","Config":{"LeafCertTTL":1e309}}',
         b"number 1e309 is out of range"),
        # an integer msgpack cannot encode, stored in the CA configuration
        ("/v1/connect/ca/configuration",
         b'{"Provider":"consul","Config":{"RotationPeriod":123456789012345678901234567890}}',
         b"number 123456789012345678901234567890 is out of range"),
    ],
)
def test_numbers_go_cannot_hold_are_400(
    agent: AgentProcess, path: str, body: bytes, message: bytes
) -> None:
    resp = agent.request(
        b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body))
        + body
    )
    assert resp.startswith(b"HTTP/1.1 400"), resp
    assert resp.endswith(b"Request decode failed: " + message)
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.log.read_text()


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_handler_exception_is_plain_500_and_logged(reactor: Any) -> None:
    flags = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "node_name": "boom",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
    }
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor)
    assert agent.catalog is not None

    class Broken(Exception):
        pass

    def add_service(*_: Any) -> None:
        raise Broken("local state is broken")

    agent.catalog.local.add_service = add_service  # type: ignore[method-assign]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    agent.startService()
    try:
        (url,) = agent.http_urls()
        r = await treq.put(url + "/v1/agent/service/register?token=s3cret",
                           data=b'{"Name": "web"}')
        body = await r.content()
    finally:
        globalLogPublisher.removeObserver(events.append)
        await agent.stopService()
    assert r.code == 500
    assert r.headers.getRawHeaders("Content-Type") == ["text/plain; charset=utf-8"]
    assert body == b"internal error: Broken"
    [event] = [e for e in events if "log_failure" in e]
    assert event["log_failure"].check(Broken)
    assert (event["method"], event["path"]) == ("PUT", "/v1/agent/service/register")


# A child process holding many connections to one port (a process may not have enough file
# descriptors for all of them): it opens them, then answers each line on stdin with the number the
# server has closed so far; end of stdin closes them all.
_HOLDER = """
import select, socket, sys
port, count, source = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ep = select.epoll()
socks = []
try:
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.bind((source, 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        ep.register(s.fileno(), select.EPOLLRDHUP | select.EPOLLHUP)
except OSError as e:
    print(f"failed after {len(socks)} sockets: {e}", flush=True)
    sys.exit(1)
closed = set()
print("open", flush=True)
for _line in sys.stdin:
    for fd, _ in ep.poll(0.5):
        if fd not in closed:
            closed.add(fd)
            ep.unregister(fd)
    print(len(closed), flush=True)
"""


@pytest.fixture
def patient_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """The default per-client limit (200) and a header deadline long enough that idle
    connections stay open for the whole test."""
    a = AgentProcess(tmp_path, 'limits {\n  http_read_header_timeout = "300s"\n}\n')
    try:
        yield a
    finally:
        a.stop()


def test_twenty_thousand_connections_from_one_address_do_not_exhaust_the_agent(
    patient_agent: AgentProcess,
) -> None:
    """The attack of the report: 20,500 idle connections from one address took every file
    descriptor of the agent. Now all but 200 (the default limit) are closed at accept, the agent
    holds a bounded number of descriptors, and another address is served meanwhile."""
    agent = patient_agent
    limit = 200
    shares = (10_250, 10_250)
    holders = [
        # One source address of their own (127.0.0.3): its ports are not shared with the
        # rest of the machine's loopback traffic, so 20,500 of them are free even when other
        # tests run beside this one.
        subprocess.Popen([sys.executable, "-c", _HOLDER, str(agent.port), str(n), "127.0.0.3"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in shares
    ]
    try:
        for h in holders:
            assert h.stdout is not None
            ready = h.stdout.readline().strip()
            assert ready == "open", ready
        closed = 0
        deadline = time.monotonic() + 120
        while closed < sum(shares) - limit and time.monotonic() < deadline:
            counts = []
            for h in holders:
                assert h.stdin is not None and h.stdout is not None
                h.stdin.write("?\n")
                h.stdin.flush()
                counts.append(int(h.stdout.readline()))
            closed = sum(counts)
        assert closed == sum(shares) - limit, closed
        agent_fds = len(list(Path(f"/proc/{agent.proc.pid}/fd").iterdir()))
        assert agent_fds < limit + 300, agent_fds
        with agent.connect("127.0.0.2") as other:
            other.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other).startswith(b"HTTP/1.1 200")
    finally:
        for h in holders:
            if h.stdin is not None:
                h.stdin.close()
            h.wait(timeout=60)
            if h.stdout is not None:
                h.stdout.close()
    assert agent.proc.poll() is None
