# -*- test-case-name: tests.unit.test_cli -*-
"""wanfedtx: WAN federation via mesh gateways, implemented with Twisted.

Servers of several datacenters federate over a WAN in which only mesh-gateway ports are
reachable: every cross-datacenter byte is TLS with ALPN and is routed by SNI.
"""

__version__ = "0.1.0.dev0"
