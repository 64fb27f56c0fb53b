"""/v1/agent/members (?wan=1) over real HTTP and UDP/TCP gossip sockets, and `wanfed members`."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import pytest_twisted
import treq
from klein import Klein
from twisted.internet import task, threads
from twisted.web.server import Site

from wanfedtx.cli.main import main
from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.pools import server_tags
from wanfedtx.gossip.serf import SerfConfig
from wanfedtx.gossip.service import SerfService
from wanfedtx.http.gossip import mount_agent_members

pytestmark = pytest.mark.integration


async def until(cond: Any, timeout: float = 10.0) -> None:
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
    raise AssertionError("timed out")


def pool(reactor: Any, name: str, tags: dict[str, str]) -> SerfService:
    cfg = local_config()
    cfg.bind_addr, cfg.bind_port = "127.0.0.1", 0
    svc = SerfService(SerfConfig(name, cfg, tags=tags), reactor, rng=random.Random())
    svc.startService()
    return svc


@pytest_twisted.ensureDeferred
async def test_members_http_and_cli(reactor: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tags = server_tags(datacenter="dc1", node_id="id-a", build="1.8.0:abc")
    lan_a = pool(reactor, "a", tags)
    lan_b = pool(reactor, "b", {"role": "node", "dc": "dc1", "segment": ""})
    wan_a = pool(reactor, "a.dc1", {**tags, "segment": ""})
    app = Klein()
    mount_agent_members(app, lambda: lan_a.serf, lambda: wan_a.serf)
    port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
    try:
        assert await lan_b.join([f"a/127.0.0.1:{lan_a.port}"]) == 1
        await until(lambda: lan_a.serf is not None and len(lan_a.serf.members) == 2)
        base = f"http://127.0.0.1:{port.getHost().port}"
        resp = await treq.get(f"{base}/v1/agent/members")
        body = json.loads(await resp.content())
        assert resp.code == 200
        assert [m["Name"] for m in body] == ["a", "b"]
        a = body[0]
        assert a["Status"] == 1 and a["Tags"]["role"] == "consul" and a["Port"] == lan_a.port
        assert (a["ProtocolMin"], a["ProtocolMax"], a["ProtocolCur"]) == (1, 5, 2)
        assert (a["DelegateMin"], a["DelegateMax"], a["DelegateCur"]) == (2, 5, 4)
        wan = json.loads(await (await treq.get(f"{base}/v1/agent/members?wan=1")).content())
        assert [m["Name"] for m in wan] == ["a.dc1"]

        addr = f"127.0.0.1:{port.getHost().port}"
        rc = await threads.deferToThread(main, ["members", "-http-addr", addr])
        out = capsys.readouterr().out.splitlines()
        assert rc == 0
        assert out[0].split() == [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Segment",
        ]
        assert out[1].split() == [
            "a",
            f"127.0.0.1:{lan_a.port}",
            "alive",
            "server",
            "1.8.0",
            "2",
            "dc1",
            "<all>",
        ]
        assert out[2].split()[:4] == ["b", f"127.0.0.1:{lan_b.port}", "alive", "client"]
        rc = await threads.deferToThread(main, ["members", "-wan", "-http-addr", addr])
        assert rc == 0 and "a.dc1" in capsys.readouterr().out
        rc = await threads.deferToThread(main, ["members", "-status", "failed", "-http-addr", addr])
        assert rc == 2
    finally:
        await port.stopListening()
        for svc in (lan_a, lan_b, wan_a):
            await svc.stopService()


def test_members_cli_reports_unreachable_agent(capsys: pytest.CaptureFixture[str]) -> None:
    from netutil import refusing_address

    with refusing_address() as addr:
        rc = main(["members", "-http-addr", addr])
    assert rc == 1
    assert "Error retrieving members" in capsys.readouterr().err
