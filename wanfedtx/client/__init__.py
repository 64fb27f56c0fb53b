"""Client agents (``server = false``): the router of this datacenter's servers, learnt from LAN
gossip, and the RPC client that sends every catalog/KV/health/status call to one of them.

Above ``rpc`` and ``gossip`` (it reads serf members and calls servers through the connection
pool); the composition root (``wanfedtx.agent``) wires it behind the same interface the HTTP
layer uses on servers.
"""
