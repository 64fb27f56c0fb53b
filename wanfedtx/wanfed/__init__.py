# -*- test-case-name: tests.unit.wanfed -*-
"""WAN gossip through mesh gateways (the reference's ``agent/consul/wanfed`` package).

* ``transport.WanfedTransport`` wraps the WAN pool's UDP/TCP transport: names of this datacenter
  go to it unchanged; other datacenters go over TLS to a mesh gateway (ALPN
  ``consul/wan-gossip/packet`` for packets on pooled connections, ``consul/wan-gossip/stream``
  for streams on fresh ones, SNI ``<node>.server.<dc>.<domain>``);
* ``pool.PacketConnPool``: the packet connection pool (keyed by node name, 2 min idle);
* ``framing``: the sans-IO 4-byte length framing of packets and its decoder;
* ``ingest``: the :8300 ALPN handlers that feed tunnelled packets and streams to the WAN pool;
* ``resolver``: a minimal ``IGatewayResolver`` (static gateways per datacenter);
* ``wiring``: plugs all of it into a server's WAN pool and RPC port.
"""
