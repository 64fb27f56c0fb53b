# -*- test-case-name: tests.unit.testing -*-
"""Fakes shipped with wanfedtx, for its own tests and for users testing against it.

Like ``treq.testing``, these are real implementations of the package's seams that run in memory
(or, for the PKI, make real certificates), so a test drives the production code through them:

- :mod:`wanfedtx.testing.pki`: the one test PKI. :class:`PKI` is a throw-away agent CA that
  issues server/client/cli certificates as ``wanfed tls cert create`` does, writes them as files
  and builds ``TLSSettings``; ``handshake_in_memory`` runs a real OpenSSL handshake over
  ``twisted.test.iosim``; ``peer_matrix`` lists the certificates of the RPC-port security matrix.
- :mod:`wanfedtx.testing.gossip`: the fake gossip transport. ``SimNetwork`` routes packets and
  streams between ``SimTransport``s (``IGossipTransport``) on a ``task.Clock`` with latency,
  loss and crashed nodes, so memberlist/serf clusters run deterministically in one process.
- :mod:`wanfedtx.testing.consensus`: fake consensus. ``LeaderConsensus`` (single server),
  ``FollowerConsensus`` (forwards everything), ``NotReadyLeaderConsensus`` (a new leader whose
  first entry is not applied yet).
- :mod:`wanfedtx.testing.forwarder`: fake RPC forwarders. ``FakeForwarder`` answers ``?dc=``
  calls from in-process servers by datacenter and fails unknown or down ones with
  "No path to datacenter"; ``ScriptedForwarder`` plays a follower during an election.

Example: a catalog endpoint on a follower whose leader is being elected::

    from wanfedtx.testing import FollowerConsensus, ScriptedForwarder

    fsm = FSM()
    forwarder = ScriptedForwarder([NoLeader()])
    endpoints = Endpoints("dc1", fsm.state, FollowerConsensus(fsm, "127.0.0.1:8300"), clock,
                          random.Random(3), forwarder=forwarder, hold_timeout=7.0)

Layering: this package may import every package below ``wanfedtx.agent``; nothing in
``wanfedtx`` outside it imports it (checked by import-linter), so it is never loaded at runtime.
"""

from __future__ import annotations

from wanfedtx.testing.consensus import (
    FollowerConsensus,
    LeaderConsensus,
    NotReadyLeaderConsensus,
)
from wanfedtx.testing.forwarder import FakeForwarder, ScriptedForwarder
from wanfedtx.testing.gossip import HeapClock, SimNetwork, SimTransport, run_for
from wanfedtx.testing.pki import PKI, client_creator, handshake_in_memory, peer_matrix

__all__ = [
    "PKI",
    "FakeForwarder",
    "FollowerConsensus",
    "HeapClock",
    "LeaderConsensus",
    "NotReadyLeaderConsensus",
    "ScriptedForwarder",
    "SimNetwork",
    "SimTransport",
    "client_creator",
    "handshake_in_memory",
    "peer_matrix",
    "run_for",
]
