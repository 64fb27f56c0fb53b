"""The KV fast path in a real ``wanfed`` Agent on 127.0.0.1: the agent's site serves plain KV
requests on it, and one keep-alive connection carrying pipelined fast requests, a request the
fast path hands over (``?recurse``) and more KV requests after it is answered in order."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_support import http_on_port_zero
from netutil import free_port
from twisted.internet.threads import deferToThread

from wanfedtx.agent.agent import Agent
from wanfedtx.config import LoadOptions, load

pytestmark = pytest.mark.integration


def _exchange(port: int, data: bytes, answers: int) -> bytes:
    """Send ``data`` on one connection; read until ``answers`` responses are in (10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while out.count(b"HTTP/1.1 ") < answers or not out.endswith((b"true", b"]", b"\n")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest_twisted.ensureDeferred
async def test_agent_serves_kv_on_the_fast_path_and_hands_over(
    reactor: Any, tmp_path: Path
) -> None:
    flags = {
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
        "node_name": "fast",
        "datacenter": "dc1",
    }
    rt = http_on_port_zero(load(LoadOptions(dev=True, flags=flags)).runtime)
    agent = Agent(rt, reactor)
    agent.startService()
    try:
        assert agent.http is not None and agent.http.site.fast_kv is not None
        (url,) = agent.http_urls()
        port = int(url.rsplit(":", 1)[1])
        stream = (
            b"PUT /v1/kv/f/a?flags=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
            b"GET /v1/kv/f/a?raw HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/kv/f?recurse HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /v1/kv/f/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
            b"DELETE /v1/kv/f/a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/kv/f?keys HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        out = await deferToThread(_exchange, port, stream, 6)
        parts = out.split(b"HTTP/1.1 ")[1:]
        assert [p[:3] for p in parts] == [b"200"] * 6
        assert parts[0].endswith(b"true") and parts[1].endswith(b"\r\n\r\none")
        assert b'"Key":"f/a"' in parts[2] and b'"Flags":5' in parts[2]
        assert parts[5].endswith(b'["f/b"]')
    finally:
        await agent.stop()
