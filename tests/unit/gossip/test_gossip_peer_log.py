"""Lines that bad gossip input causes are rate-limited per reason and name the sender."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import task

from wanfedtx.gossip import memberlist
from wanfedtx.gossip.config import local_config
from wanfedtx.gossip.memberlist import Memberlist
from wanfedtx.gossip.simnet import SimNetwork
from wanfedtx.ratelog import DEFAULT_BURST, DEFAULT_INTERVAL

N = 1000


def memberlist_lines(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logged if e.get("log_namespace") == memberlist.log.namespace]


@pytest.mark.parametrize(
    "packet, reason",
    [
        (b"", "packet-short"),
        (b"\xff\x01\x02", "bad-packet"),
        (b"\x0c\x00\x00\x00\x00\x00\x01", "checksum"),
    ],
)
def test_bad_packets_write_a_bounded_number_of_lines(
    logged: list[dict[str, Any]], packet: bytes, reason: str
) -> None:
    clock = task.Clock()
    cfg = local_config("n0")
    cfg.bind_port = 7000
    ml = Memberlist(cfg, SimNetwork(clock).transport("127.0.0.1", 7000), clock, random.Random(1))
    for i in range(N):
        ml.ingest_packet(packet, ("192.0.2.9", 1000 + i), 0.0)
    lines = memberlist_lines(logged)
    assert len(lines) == DEFAULT_BURST
    assert [(e["reason"], e["src"]) for e in lines][:1] == [(reason, "192.0.2.9:1000")]
    assert all(e["reason"] == reason and e["src"].startswith("192.0.2.9:") for e in lines)
    clock.advance(DEFAULT_INTERVAL)
    summary = memberlist_lines(logged)[DEFAULT_BURST:]
    assert [(e["reason"], e["count"]) for e in summary] == [(reason, N - DEFAULT_BURST)]
