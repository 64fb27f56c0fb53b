# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""Gossip: memberlist/serf wire-compatible SWIM (sans-IO core plus Twisted transports).

Modules: ``wire`` (memberlist message codec), ``lzw`` (Go ``compress/lzw``), ``security`` (AES-GCM
keyring), ``stream`` (incremental TCP stream decoder), ``memberlist`` (sans-IO SWIM core),
``config`` (timing profiles), ``interfaces`` (transport seam), ``transport`` (Twisted UDP/TCP),
``serf``.
"""
