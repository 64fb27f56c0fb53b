# -*- test-case-name: tests.unit.rpc.test_rpc_sniff -*-
"""The :8300 server port and the RPC layer.

* ``constants``: type bytes, ALPN names and timing constants of the reference.
* ``sniff``: sans-IO first-byte sniffer (legacy type byte vs native TLS).
* ``registry``: handlers by type byte and by ALPN name (``IRPCHandler``).
* ``server``: the Twisted protocol/factory of the RPC port (sniffer, wrap-mode TLS, dispatch).
* ``codec``: sans-IO RPC frame codec (length-prefixed msgpack); ``endpoints``: ``Service.Method``
  registry with ``Status.Ping``; ``protocol``: Twisted server and client RPC protocols.
* ``dial``/``pool``: outgoing connections (direct, legacy TLS, via mesh gateway) and the node-named
  connection pool; ``forward``: forwarding to the leader and to other datacenters.
"""
