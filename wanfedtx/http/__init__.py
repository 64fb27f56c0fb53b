# -*- test-case-name: tests.unit.http -*-
"""Consul-compatible HTTP API (``/v1/...``) served with Klein."""
