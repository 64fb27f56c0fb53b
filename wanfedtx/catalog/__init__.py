# -*- test-case-name: tests.unit.agent.test_agent_local_ae,tests.unit.raft.test_raft_service -*-
"""Catalog, health, KV, internal and status endpoints (the RPC side).

Handlers take and return msgpack-able dicts shaped like the reference's structs
(``RegisterRequest``, ``IndexedNodes``, ``DirEntry``, ...). See :mod:`wanfedtx.catalog.endpoints`.
"""
