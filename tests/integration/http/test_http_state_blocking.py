"""Blocking queries over real sockets: wait expiry, and clients that hang up while waiting."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.server import Request

pytestmark = pytest.mark.integration


@pytest_twisted.ensureDeferred
async def test_wait_expires_with_the_same_index(state_api: Any, reactor: Any) -> None:
    r = await treq.put(f"{state_api.url}/v1/kv/k", data=b"1")
    assert await r.text() == "true"
    r = await treq.get(f"{state_api.url}/v1/kv/k")
    index = r.headers.getRawHeaders("X-Consul-Index")[0]
    await r.content()
    start = reactor.seconds()
    r = await treq.get(f"{state_api.url}/v1/kv/k?index={index}&wait=200ms")
    body = await r.json()
    assert reactor.seconds() - start >= 0.2
    assert r.code == 200 and body[0]["Key"] == "k"
    assert r.headers.getRawHeaders("X-Consul-Index") == [index]


@pytest.mark.parametrize("request_factory", ["api", "plain"])
@pytest_twisted.ensureDeferred
async def test_client_hangup_releases_the_watch(
    state_api: Any, reactor: Any, request_factory: str
) -> None:
    """The agent's ``APIRequest`` cancels the parked query on connection loss; with Twisted's
    plain ``Request`` the parked response uses ``notifyFinish``. Either way nothing is left."""
    if request_factory == "plain":
        state_api.site.requestFactory = Request
    r = await treq.put(f"{state_api.url}/v1/kv/k", data=b"1")
    await r.content()
    store = state_api.server.fsm.state
    index = store.kvs_get(None, "k")[0]
    proto = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", state_api.port), Protocol()
    )
    proto.transport.write(
        f"GET /v1/kv/k?index={index}&wait=60s HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    watches = store.tables["kvs"]._key_watch
    for _ in range(200):
        if len(watches):
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert len(watches) == 1, "the blocking query never parked"
    proto.transport.loseConnection()
    for _ in range(200):
        if not len(watches):
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert len(watches) == 0, "the watch outlived its client"
    # The blocking query's wait timer is gone too.
    assert len(state_api.server.endpoints.timers) == 0


@pytest_twisted.ensureDeferred
async def test_parked_reads_are_answered_by_one_write(state_api: Any) -> None:
    """Blocking reads of a key, a prefix and a raw value all park, and one write answers each
    with the new index and the new data."""
    r = await treq.put(f"{state_api.url}/v1/kv/p/k", data=b"1")
    await r.content()
    store = state_api.server.fsm.state
    kv_index = store.kvs_get(None, "p/k")[0]
    urls = [
        f"/v1/kv/p/k?index={kv_index}",
        f"/v1/kv/p/?recurse&index={kv_index}",
        f"/v1/kv/p/k?raw&index={kv_index}",
    ]
    waits = [treq.get(f"{state_api.url}{u}&wait=30s") for u in urls]
    answered: list[str] = []
    for u, w in zip(urls, waits, strict=True):
        w.addCallback(lambda resp, u=u: answered.append(u) or resp)
    timers = state_api.server.endpoints.timers
    for _ in range(500):
        if len(timers) == len(urls):
            break
        await deferLater(reactor_of(state_api), 0.01, lambda: None)
    assert len(timers) == len(urls), "not every read parked"
    assert answered == []
    r = await treq.put(f"{state_api.url}/v1/kv/p/k", data=b"22")
    await r.content()
    for url, w in zip(urls, waits, strict=True):
        resp = await w
        body = await resp.content()
        assert resp.code == 200, url
        assert int(resp.headers.getRawHeaders("X-Consul-Index")[0]) > kv_index, url
        assert (body == b"22") if "raw" in url else (b'"MjI="' in body), (url, body)
    assert len(timers) == 0


def reactor_of(api: Any) -> Any:
    return api.server.reactor
