"""The one pre-chosen-port helper of the test suite, and why it still exists.

Tests listen on port 0 and read the bound port wherever the component allows it (Twisted's
``listenTCP(0)`` + ``getHost()``, ``HTTPServerService.bound_addresses()`` via
``Agent.http_urls()``, ``NetTransport.listen()``, the Go peers' ``ready`` event). A port number
picked in advance is racy (another process may take it between the pick and the bind), so
:func:`free_port` is left only where a port must be known before anything listens:

- an agent's ``ports.serf_lan``/``serf_wan``/``server``: Consul's config means "disabled" by 0
  (and rejects 0 for serf_lan and server), and the agent advertises these configured numbers
  (gossip tags ``port``/``wan_join_port``, its raft/RPC address), so other agents must be told;
- ``wanfed agent`` / ``wanfed gateway`` / ``bench/raft/raft_node.py`` subprocesses, whose peers or
  command line must carry each other's addresses before they start;
- an address where nothing listens (a join or ``-http-addr`` that must fail).
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port number free for both TCP and UDP on ``host`` right now (gossip binds both).

    Racy by nature: use port 0 and read the bound port whenever the component can (see the
    module docstring for where it cannot)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
