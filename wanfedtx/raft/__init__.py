# -*- test-case-name: tests.unit.raft.test_raft_bounds,tests.unit.raft.test_raft_core -*-
"""Consensus: a sans-IO Raft core, its msgpack messages, a durable log and a Twisted shell."""
