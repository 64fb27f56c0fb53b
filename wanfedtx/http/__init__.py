"""Consul-compatible HTTP API (``/v1/...``) served with Klein."""
