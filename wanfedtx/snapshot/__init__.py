"""Snapshots of a datacenter's state: the archive format, the ``consul/rpc-snapshot`` stream on
the RPC port, and the server side that saves and restores through raft."""
