# -*- test-case-name: tests.unit.tls.test_tls_configurator -*-
"""Compatibility name for the test PKI: everything here lives in :mod:`wanfedtx.testing.pki`.

Nothing here is used at runtime; new code imports ``wanfedtx.testing``.
"""

from __future__ import annotations

from wanfedtx.testing.pki import (
    PKI,
    Record,
    RecordingFactory,
    RecordingProtocol,
    client_creator,
    handshake_in_memory,
    peer_matrix,
)

__all__ = [
    "PKI",
    "Record",
    "RecordingFactory",
    "RecordingProtocol",
    "client_creator",
    "handshake_in_memory",
    "peer_matrix",
]
