# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""Exceptions of the gossip package; messages say what was wrong and what to do."""

from __future__ import annotations


class GossipError(Exception):
    """Base class of every gossip error."""


class WireError(GossipError):
    """Bytes received from a peer could not be decoded (bad msgpack, framing, CRC, LZW, size)."""


class CompressionError(WireError):
    """An LZW payload was corrupt or too large."""


class EncryptionError(WireError):
    """A payload could not be decrypted with any installed key, or had a bad layout."""


class KeyringError(GossipError):
    """A keyring operation was invalid (bad key size, removing the primary key, ...)."""


class ConfigError(GossipError):
    """Gossip configuration is invalid."""


class NodeNamesRequired(GossipError):
    """A send had no node name while ``require_node_names`` is on (memberlist's exact message)."""

    def __init__(self) -> None:
        super().__init__(
            "memberlist: node names are required by configuration but one was not provided"
        )


class JoinError(GossipError):
    """Joining a cluster failed (bad address syntax, or no node could be contacted)."""
