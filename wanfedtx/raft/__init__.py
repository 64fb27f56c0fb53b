"""Consensus: a sans-IO Raft core, its msgpack messages, a durable log and a Twisted shell."""
