# -*- test-case-name: tests.unit.gateway -*-
"""Mesh gateway data plane: ClientHello reader, routing snapshot, SNI relay, admin API, Envoy JSON.

The gateway never terminates TLS. It reads the SNI from the ClientHello, picks a filter chain and
cluster from the current routing snapshot (built exactly as the reference's xDS generator does for a
mesh gateway), connects to a healthy endpoint and relays bytes both ways.
"""
