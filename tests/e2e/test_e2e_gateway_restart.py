"""Fault: the secondary's mesh gateway goes away and comes back.

While it is down, an RPC from the primary to the secondary fails with the dial error (a 500, as
Consul's RPC errors); once the same gateway command runs again, RPC works at once (the pooled
connections through the dead gateway were dropped and new ones dialed), and the WAN pool, whose
members marked each other failed meanwhile, is whole again through serf's reconnect.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wanfedtx.cli.demo import Federation, _alive_wan, _put, poll_until

pytestmark = pytest.mark.integration

P = "http://127.0.1.1:8500"
S = "http://127.0.2.1:8500"


def test_federation_recovers_from_a_gateway_restart(tmp_path: Path) -> None:
    fed = Federation(tmp_path, {"primary": "127.0.1.1", "secondary": "127.0.2.1"})
    try:
        fed.start(lambda _: None)
        assert fed.wait(120)
        gateway = fed.procs[3]  # the secondary's
        command = gateway.args
        gateway.terminate()
        assert gateway.wait(timeout=30) == 0
        code, body = _put(f"{P}/v1/kv/x?dc=secondary", b"down")
        assert code == 500 and "TLS handshake with 127.0.1.1:4431 failed" in body, body
        # Gossip notices too: each side marks the other failed.
        assert poll_until(lambda: _alive_wan(P) == 1 and _alive_wan(S) == 1, 60)
        log = (tmp_path / "secondary" / "gateway-2.log").open("wb")
        fed.procs[3] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        assert poll_until(lambda: _put(f"{P}/v1/kv/x?dc=secondary", b"up")[0] == 200, 30)
        assert poll_until(lambda: _put(f"{S}/v1/kv/y?dc=primary", b"up")[0] == 200, 30)
        # serf retries failed members every 30 s (reconnect_interval)
        assert poll_until(lambda: _alive_wan(P) == 2 and _alive_wan(S) == 2, 75)
    finally:
        fed.stop()
