# -*- test-case-name: tests.unit.gossip.test_gossip_memberlist,tests.unit.testing -*-
"""The fake gossip transport: an in-memory network of ``IGossipTransport``s on a clock.

The implementation stays in :mod:`wanfedtx.gossip.simnet` (the gossip package's own simulation
benchmark runs on it); this module is its public, shipped name. Example::

    clock = task.Clock()
    net = SimNetwork(clock, latency=0.001)
    transport = net.transport("10.0.0.1", 7946)
    a = Memberlist(config_a, transport, clock, random.Random(1))
    ...
    run_for(clock, 5.0)   # deliver packets and fire timers for five simulated seconds
    transport.up = False  # crash a node: everything to it is dropped
"""

from __future__ import annotations

from wanfedtx.gossip.simnet import HeapClock, SimNetwork, SimTransport, run_for

__all__ = ["HeapClock", "SimNetwork", "SimTransport", "run_for"]
