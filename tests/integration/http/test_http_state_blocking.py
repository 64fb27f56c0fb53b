"""Blocking queries over real sockets: wait expiry, and clients that hang up while waiting."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

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


@pytest_twisted.ensureDeferred
async def test_client_hangup_releases_the_watch(state_api: Any, reactor: Any) -> None:
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
    assert not [
        c for c in reactor.getDelayedCalls() if getattr(c.func, "__name__", "") == "expired"
    ]
